"""NATS JetStream key-value: every key of a bucket (`db.host` keys nest), watched natively."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from microstd.config.sources._kv import decode_value
from microstd.config.sources.base import Source, nest
from microstd.errors import ConfigError

__all__ = ["NatsSource", "nats"]

_PUT_OPS = (None, "PUT")


class NatsSource(Source):
    """The keys of one JetStream KV bucket, dots nesting (`db.host`)."""

    textual = True

    def __init__(
        self,
        url: str,
        bucket: str,
        *,
        separator: str = ".",
        optional: bool = False,
        name: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.bucket = bucket
        self.separator = separator
        self.timeout = timeout
        super().__init__(name or f"nats:{bucket}", optional=optional)

    async def _connect(self) -> Any:
        import nats as nats_client

        from microstd._backends import parse_url

        # A cluster's server list (nats://a:4222,nats://b:4222): each server a URL.
        return await nats_client.connect(
            list(parse_url(self.url).servers),
            connect_timeout=self.timeout,
            max_reconnect_attempts=0,
            allow_reconnect=False,
        )

    async def fetch(self) -> dict[str, Any]:
        try:
            nc = await self._connect()
        except Exception as exc:  # nats-py raises plain Exceptions of many kinds on connect
            raise ConfigError(f"{self.name}: cannot connect to NATS: {exc}") from None
        try:
            kv = await nc.jetstream().key_value(self.bucket)
            watcher = await kv.watchall()
            flat: dict[str, Any] = {}
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
                await watcher.stop()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"{self.name}: cannot read bucket {self.bucket!r}: {exc}") from None
        finally:
            await nc.close()
        return nest(flat, self.separator, self.name)

    async def changes(self) -> AsyncIterator[None]:
        from nats import errors as nats_errors

        try:
            nc = await self._connect()
        except Exception as exc:
            raise ConfigError(f"{self.name}: cannot connect to NATS: {exc}") from None
        try:
            kv = await nc.jetstream().key_value(self.bucket)
            watcher = await kv.watchall()
            initial = True
            try:
                while True:
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except nats_errors.TimeoutError:
                        # The watcher itself never notices a lost connection: check it.
                        if nc.is_closed or not nc.is_connected:
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
            await nc.close()


def nats(
    url: str,
    bucket: str,
    *,
    separator: str = ".",
    optional: bool = False,
    name: str | None = None,
    timeout: float = 5.0,
) -> NatsSource:
    """Every key of the JetStream KV `bucket` at `url` (`nats://127.0.0.1:4222`, or a
    cluster's server list `nats://a:4222,nats://b:4222`)."""
    return NatsSource(
        url, bucket, separator=separator, optional=optional, name=name, timeout=timeout
    )
