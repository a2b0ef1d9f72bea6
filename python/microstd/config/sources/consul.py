"""Consul KV over its HTTP API: `GET /v1/kv/<prefix>?recurse`, watched by blocking queries.

Implemented against Consul's documented API; the tests run it against a
local HTTP server that follows those endpoints, not a real Consul.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from microstd import _deps
from microstd._backends import redact, redact_text
from microstd.config.sources._kv import decode_value, kv_tree
from microstd.config.sources.base import Source
from microstd.errors import ConfigError

__all__ = ["ConsulSource", "consul"]


class ConsulSource(Source):
    """Keys under `prefix` (`app/db/host` -> `db.host`) in Consul's KV store."""

    textual = True

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        token: str | None = None,
        separator: str = "/",
        wait: str = "55s",
        optional: bool = False,
        name: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.prefix = prefix.lstrip("/")
        self.token = token
        self.separator = separator
        self.wait = wait
        self.timeout = timeout
        super().__init__(name or f"consul:{self.prefix}", optional=optional)
        _deps.require("aiohttp", "config.consul()", extra="http")

    def _session(self) -> Any:
        import aiohttp

        headers = {"X-Consul-Token": self.token} if self.token else {}
        return aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
        )

    async def _get(self, session: Any, index: str | None) -> tuple[dict[str, Any], str | None]:
        params = {"recurse": "true"}
        if index is not None:
            params.update(index=index, wait=self.wait)
        url = f"{self.url}/v1/kv/{quote(self.prefix)}"
        async with session.get(url, params=params) as resp:
            new_index = resp.headers.get("X-Consul-Index")
            if resp.status == 404:
                return {}, new_index
            if resp.status != 200:
                raise ConfigError(f"{self.name}: Consul returned HTTP {resp.status}")
            entries = await resp.json(content_type=None)
        pairs: dict[str, str] = {}
        for entry in entries or ():
            raw = entry.get("Value")
            if raw is None:
                continue  # a "folder" key
            pairs[entry["Key"]] = decode_value(base64.b64decode(raw), self.name)
        return kv_tree(pairs, self.prefix, self.separator, self.name), new_index

    async def fetch(self) -> dict[str, Any]:
        import aiohttp

        try:
            async with self._session() as session:
                tree, _ = await self._get(session, None)
                return tree
        except (aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError) as exc:
            where, why = redact(self.url), redact_text(str(exc))
            raise ConfigError(f"{self.name}: cannot read {where}: {why}") from None

    async def changes(self) -> AsyncIterator[None]:
        import aiohttp

        try:
            async with self._session() as session:
                tree, index = await self._get(session, None)
                while True:
                    new_tree, new_index = await self._get(session, index or "0")
                    # Consul asks clients to reset when the index goes backwards.
                    if new_index and index and int(new_index) < int(index):
                        new_index = "0"
                    index = new_index
                    if new_tree != tree:
                        tree = new_tree
                        yield None
        except (aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError) as exc:
            where, why = redact(self.url), redact_text(str(exc))
            raise ConfigError(f"{self.name}: watch on {where} failed: {why}") from None


def consul(
    url: str,
    prefix: str,
    *,
    token: str | None = None,
    separator: str = "/",
    wait: str = "55s",
    optional: bool = False,
    name: str | None = None,
    timeout: float = 5.0,
) -> ConsulSource:
    """Keys under `prefix` in the Consul agent at `url` (`http://127.0.0.1:8500`)."""
    return ConsulSource(
        url,
        prefix,
        token=token,
        separator=separator,
        wait=wait,
        optional=optional,
        name=name,
        timeout=timeout,
    )
