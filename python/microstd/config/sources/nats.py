"""NATS JetStream key-value: every key of a bucket (`db.host` keys nest), watched natively."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from microstd import _deps
from microstd.config.sources._kv import decode_value
from microstd.config.sources.base import Source, nest
from microstd.errors import ConfigError, ConnectionFailed, InvalidArgument, MicrostdError

__all__ = ["NatsSource", "nats"]

_PUT_OPS = (None, "PUT")

#: How often, and for how long, a watch that cannot be made because the connection
#: is reconnecting or JetStream is unavailable is tried again before the failure is
#: reported. A three-server cluster answers again within a few seconds of losing one.
_SETUP_RETRY = 0.25
_SETUP_WINDOW = 10.0


class NatsSource(Source):
    """The keys of one JetStream KV bucket, dots nesting (`db.host`).

    Connection, timeouts and errors are `microstd._engines.nats`'s, and the
    connection is shared with every store, broker and registry of the process on
    the same URL: it reconnects without limit. Options ``connect_timeout``,
    ``timeout`` (5 s each; `timeout=` sets both, as before), ``ping_interval``,
    in the URL or as keywords. A read that fails raises `ConfigError`; a watch
    raises `ConfigError` as soon as the connection is lost (even for a moment: its
    consumer may have been on the server that went away), and the reload
    machinery starts it again and reloads. A new watch waits for the connection
    and for JetStream to answer (a cluster elects new leaders within seconds of
    losing a server), then asks for one reload, so a change made while no watch
    was running is applied too.
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
        # The keys from the stream's info, then each value (nats_kv), not
        # kv.watchall(): that makes an ephemeral consumer, which a cluster with a
        # server down may place on the dead one and never answer.
        import nats.js.errors as jerr

        from microstd._engines import nats_kv

        kv = await self._bucket(conn, "read")
        nc = await conn.ready(f"{self.name} read")

        async def value(key: str) -> bytes | None:
            try:
                entry = await kv.get(key)
            except jerr.KeyNotFoundError:  # deleted or purged (or gone since)
                return None
            return (entry.value or b"") if entry.operation in _PUT_OPS else None

        with conn.errors(f"{self.name} read"):
            keys = await nats_kv.kv_names(nc, self.bucket, timeout=self.timeout)
            # In batches: a failed read cancels the others, none runs on after we raise.
            values = await nats_kv.in_batches(value, keys)
        return {
            key: decode_value(raw, self.name)
            for key, raw in zip(keys, values, strict=True)
            if raw is not None
        }

    async def changes(self) -> AsyncIterator[None]:
        from microstd._engines import nats as engine

        try:
            conn = await engine.acquire(self.endpoint)
        except MicrostdError as exc:
            raise ConfigError(f"{self.name}: cannot connect to NATS: {exc}") from None
        # Set on any loss of the connection, however short: the watcher's consumer
        # may have lived on the server that went away, and nats-py only notices
        # that after missing two heartbeats (10 s), then re-creates it in the
        # background, every 10 s while the cluster is electing new leaders (a
        # reload measured 30 s after its server was killed). So the watch ends at
        # once instead, reported, and a new one is made as soon as JetStream
        # answers (`_watcher`).
        lost = asyncio.Event()

        def on_event(event: str) -> None:
            if event != "reconnected":
                lost.set()

        stop_listening = conn.listen(on_event)
        try:
            watcher = await self._watcher(conn, lost)
            gone = asyncio.ensure_future(lost.wait())
            update: asyncio.Future[Any] | None = None
            initial = True
            try:
                while True:
                    update = asyncio.ensure_future(watcher.updates(timeout=None))
                    await asyncio.wait({update, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        # Ended once the client is back (or after `timeout`): releasing
                        # the last user of the connection closes it, and nats-py leaks
                        # the socket of a reconnection attempt that a close cancels.
                        await conn.until_up(self.timeout)
                        raise ConfigError(f"{self.name}: NATS connection lost")
                    entry = update.result()
                    if entry is None:
                        # The current values are delivered: changes made while no watch
                        # was running (since the load, or before this watch replaced a
                        # lost one) are applied by the reload this asks for.
                        initial = False
                        yield None
                    elif not initial:
                        yield None
            finally:
                for task in (update, gone):
                    if task is not None and not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                with contextlib.suppress(Exception):
                    await watcher.stop()
        finally:
            stop_listening()
            await engine.release(conn)

    async def _watcher(self, conn: Any, lost: asyncio.Event) -> Any:
        """A new watcher of every key, made on a live connection.

        A connection that is reconnecting, or a cluster whose JetStream is
        unavailable while it elects new leaders after losing a server (a few
        seconds), fails with `ConnectionFailed`: tried again every
        `_SETUP_RETRY` s for `_SETUP_WINDOW` s, then `ConfigError`, and the
        reload machinery goes on with its own back-off. Any other error is a
        `ConfigError` at once (a missing bucket).
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _SETUP_WINDOW
        while True:
            lost.clear()
            try:
                kv = await self._bucket(conn, "watch")
                with conn.errors(f"{self.name} watch"):
                    watcher = await kv.watchall()
            except ConnectionFailed as exc:
                if loop.time() >= give_up:
                    raise ConfigError(f"{self.name}: watch failed: {exc}") from None
            except MicrostdError as exc:
                raise ConfigError(f"{self.name}: watch failed: {exc}") from None
            else:
                if conn.connected and not lost.is_set():
                    return watcher
                # Lost while it was being made: its consumer may be gone already.
                with contextlib.suppress(Exception):
                    await watcher.stop()
                if loop.time() >= give_up:
                    raise ConfigError(f"{self.name}: NATS connection lost")
            await asyncio.sleep(_SETUP_RETRY * random.uniform(0.5, 1.5))


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
