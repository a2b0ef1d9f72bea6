"""etcd v3: every key under a prefix, watched natively."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from microstd import _deps
from microstd.config.sources._kv import decode_value, kv_tree
from microstd.config.sources.base import Source
from microstd.errors import ConfigError, ConnectionFailed, InvalidArgument, MicrostdError

__all__ = ["EtcdSource", "etcd"]


class EtcdSource(Source):
    """Keys under `prefix` in etcd (`/app/db/host` -> `db.host`), via the v3 JSON gateway.

    Connection, timeouts and errors are `microstd._engines.etcd`'s: options
    ``connect_timeout``, ``timeout`` (5 s each) and ``ping_interval`` (10 s), in
    the URL (``etcd://host:2379?timeout=2``) or as keywords; `timeout=` also
    sets both time limits at once, as before. A read that fails raises
    `ConfigError`; a watch whose stream is lost (or fails its liveness check)
    raises `ConfigError` too, and the reload machinery starts it again and reloads.
    """

    textual = True

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        separator: str = "/",
        optional: bool = False,
        name: str | None = None,
        timeout: float | None = None,
        **connection: Any,
    ) -> None:
        from microstd._engines import etcd as engine

        _deps.require("aiohttp", "config.etcd()", extra="etcd")

        if timeout is not None:
            connection.setdefault("timeout", timeout)
            connection.setdefault("connect_timeout", timeout)
        self.endpoint, rest = engine.EtcdEndpoint.from_url(url, connection)
        if rest:
            raise InvalidArgument(f"unknown etcd config options: {sorted(rest)}")
        self.base = self.endpoint.base
        self.prefix = prefix
        self.separator = separator
        self.timeout = self.endpoint.timeouts.request
        super().__init__(name or f"etcd:{prefix}", optional=optional)

    async def fetch(self) -> dict[str, Any]:
        from microstd._engines import etcd as engine

        try:
            client = await engine.acquire(self.endpoint)
            try:
                raw, _ = await client.range_prefix(self.prefix.encode(), f"{self.name} read")
            finally:
                await engine.release(client)
            pairs = {
                k.decode("utf-8", "replace"): decode_value(v, f"{self.name} {k!r}")
                for k, v in raw.items()
            }
        except (MicrostdError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            where = self.endpoint.redacted
            raise ConfigError(f"{self.name}: cannot read {where}: {exc}") from None
        return kv_tree(pairs, self.prefix, self.separator, self.name)

    async def changes(self) -> AsyncIterator[None]:
        from microstd._engines import etcd as engine

        prefix = self.prefix.encode()
        request = {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)}
        try:
            client = await engine.acquire(self.endpoint)
            try:
                async for result in client.watch(request, f"{self.name} watch"):
                    if result.get("events"):
                        yield None
            finally:
                await engine.release(client)
        except ConnectionFailed as exc:
            raise ConfigError(
                f"{self.name}: watch on {self.endpoint.redacted} failed: {exc}"
            ) from None


def etcd(
    url: str,
    prefix: str,
    *,
    separator: str = "/",
    optional: bool = False,
    name: str | None = None,
    timeout: float | None = None,
    **connection: Any,
) -> EtcdSource:
    """Every key under `prefix` in the etcd at `url` (`etcd://127.0.0.1:2379`, or a
    cluster's members `etcd://h1,h2,h3`), watched natively.

    `connection` takes the engine's options (`connect_timeout`, `timeout`,
    `ping_interval`), which the URL's query may also give."""
    return EtcdSource(
        url,
        prefix,
        separator=separator,
        optional=optional,
        name=name,
        timeout=timeout,
        **connection,
    )
