"""NATS JetStream key-value: every key of a bucket (`db.host` keys nest), watched natively."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from microstd import _deps
from microstd.config.sources._kv import decode_value
from microstd.config.sources.base import Source, nest
from microstd.errors import ConfigError, InvalidArgument, MicrostdError

__all__ = ["NatsSource", "nats"]

_PUT_OPS = (None, "PUT")


class NatsSource(Source):
    """The keys of one JetStream KV bucket, dots nesting (`db.host`).

    Connection, timeouts and errors are `microstd._engines.nats`'s, and the
    connection is shared with every store, broker and registry of the process on
    the same URL: it reconnects without limit. Options ``connect_timeout``,
    ``timeout`` (5 s each; `timeout=` sets both, as before), ``ping_interval``,
    in the URL or as keywords. A read that fails raises `ConfigError`; a watch
    raises `ConfigError` when the connection is lost, and the reload machinery
    starts it again (waiting for the connection) and reloads.
    """

    textual = True

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        separator: str = ".",
        optional: bool = False,
        name: str | None = None,
        timeout: float | None = None,
        **connection: Any,
    ) -> None:
        with _deps.needed_by("config.nats()"):
            from microstd._engines import nats as engine

        if timeout is not None:
            connection.setdefault("timeout", timeout)
            connection.setdefault("connect_timeout", timeout)
        self.endpoint, rest = engine.NatsEndpoint.from_url(url, connection)
        if rest:
            raise InvalidArgument(f"unknown nats config options: {sorted(rest)}")
        self.url = url
        self.bucket = bucket
        self.separator = separator
        self.timeout = self.endpoint.timeouts.request
        super().__init__(name or f"nats:{bucket}", optional=optional)

    async def _bucket(self, conn: Any, what: str) -> Any:
        await conn.ready(f"{self.name} {what}")
        js = conn.jetstream(f"{self.name} {what}")
        with conn.errors(f"{self.name} {what}"):
            return await js.key_value(self.bucket)

    async def fetch(self) -> dict[str, Any]:
        from microstd._engines import nats as engine

        try:
            conn = await engine.acquire(self.endpoint)
            try:
                flat = await self._read_all(conn)
            finally:
                await engine.release(conn)
        except ConfigError:
            raise
        except (MicrostdError, ValueError) as exc:
            raise ConfigError(f"{self.name}: cannot read bucket {self.bucket!r}: {exc}") from None
        return nest(flat, self.separator, self.name)

    async def _read_all(self, conn: Any) -> dict[str, Any]:
        kv = await self._bucket(conn, "read")
        flat: dict[str, Any] = {}
        with conn.errors(f"{self.name} read"):
            watcher = await kv.watchall()
            try:
                while True:
                    entry = await watcher.updates(timeout=self.timeout)
                    if entry is None:
                        break  # the end of the initial values
                    if entry.operation in _PUT_OPS and entry.value is not None:
                        flat[entry.key] = decode_value(entry.value, self.name)
                    else:
                        flat.pop(entry.key, None)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()
        return flat

    async def changes(self) -> AsyncIterator[None]:
        from nats import errors as nats_errors

        from microstd._engines import nats as engine

        try:
            conn = await engine.acquire(self.endpoint)
        except MicrostdError as exc:
            raise ConfigError(f"{self.name}: cannot connect to NATS: {exc}") from None
        try:
            try:
                kv = await self._bucket(conn, "watch")
                with conn.errors(f"{self.name} watch"):
                    watcher = await kv.watchall()
            except MicrostdError as exc:
                raise ConfigError(f"{self.name}: watch failed: {exc}") from None
            initial = True
            try:
                while True:
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except nats_errors.TimeoutError:
                        # The watcher itself never notices a lost connection: check it.
                        if not conn.connected:
                            raise ConfigError(f"{self.name}: NATS connection lost") from None
                        continue
                    if entry is None:
                        initial = False
                        continue
                    if not initial:
                        yield None
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()
        finally:
            await engine.release(conn)


def nats(
    url: str,
    bucket: str,
    *,
    separator: str = ".",
    optional: bool = False,
    name: str | None = None,
    timeout: float | None = None,
    **connection: Any,
) -> NatsSource:
    """Every key of the JetStream KV `bucket` at `url` (`nats://127.0.0.1:4222`, or a
    cluster's server list `nats://a:4222,nats://b:4222`).

    `connection` takes the engine's options (`connect_timeout`, `timeout`,
    `ping_interval`, ...), which the URL's query may also give."""
    return NatsSource(
        url,
        bucket,
        separator=separator,
        optional=optional,
        name=name,
        timeout=timeout,
        **connection,
    )
