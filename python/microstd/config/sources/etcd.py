"""etcd v3: every key under a prefix, watched natively."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from microstd._backends import redact, redact_text
from microstd.config.sources import _etcd_http
from microstd.config.sources._kv import decode_value, kv_tree
from microstd.config.sources.base import Source
from microstd.errors import ConfigError

__all__ = ["EtcdSource", "etcd"]


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"etcd": "http", "etcds": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"etcd URL must be etcd://host:port or http(s)://host:port, not {url!r}")
    return f"{scheme}://{parts.netloc}"


class EtcdSource(Source):
    """Keys under `prefix` in etcd (`/app/db/host` -> `db.host`), via the v3 JSON gateway."""

    textual = True

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        separator: str = "/",
        optional: bool = False,
        name: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.base = _base_url(url)
        self.prefix = prefix
        self.separator = separator
        self.timeout = timeout
        super().__init__(name or f"etcd:{prefix}", optional=optional)

    def _session(self) -> Any:
        import aiohttp

        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.timeout, sock_connect=self.timeout
            )
        )

    async def fetch(self) -> dict[str, Any]:
        import aiohttp

        try:
            async with self._session() as session:
                raw, _ = await _etcd_http.range_prefix(session, self.base, self.prefix.encode())
            pairs = {k: decode_value(v, f"{self.name} {k}") for k, v in raw.items()}
        except (
            aiohttp.ClientError,
            ConnectionError,
            TimeoutError,
            asyncio.TimeoutError,
            ValueError,
        ) as exc:
            where, why = redact(self.base), redact_text(str(exc))
            raise ConfigError(f"{self.name}: cannot read {where}: {why}") from None
        return kv_tree(pairs, self.prefix, self.separator, self.name)

    async def changes(self) -> AsyncIterator[None]:
        import aiohttp

        try:
            async with self._session() as session:
                async for _events in _etcd_http.watch_prefix(
                    session, self.base, self.prefix.encode()
                ):
                    yield None
        except (aiohttp.ClientError, ConnectionError, TimeoutError, asyncio.TimeoutError) as exc:
            where, why = redact(self.base), redact_text(str(exc))
            raise ConfigError(f"{self.name}: watch on {where} failed: {why}") from None


def etcd(
    url: str,
    prefix: str,
    *,
    separator: str = "/",
    optional: bool = False,
    name: str | None = None,
    timeout: float = 5.0,
) -> EtcdSource:
    """Every key under `prefix` in the etcd at `url` (`etcd://127.0.0.1:2379`), watched natively."""
    return EtcdSource(
        url, prefix, separator=separator, optional=optional, name=name, timeout=timeout
    )
