"""Vault KV v2 over its HTTP API: `GET /v1/<mount>/data/<path>` with `X-Vault-Token`.

Every value is secret. Vault has no watch for KV, so the source polls the
secret's metadata version with jitter. Implemented against Vault's
documented API; the tests run it against a local HTTP server that follows
those endpoints, not a real Vault.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from microstd import _deps
from microstd._backends import redact
from microstd.config.secrets import Secret
from microstd.config.sources.base import Source, poll_changes
from microstd.errors import ConfigError

__all__ = ["VaultSource", "vault"]


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _wrap(v) for k, v in value.items()}
    if isinstance(value, str):
        return Secret(value)
    return value


class VaultSource(Source):
    """One KV v2 secret; its keys (`db.password` written as nested JSON) become config keys."""

    secret = True

    def __init__(
        self,
        url: str,
        path: str,
        *,
        token: str,
        mount: str = "secret",
        namespace: str | None = None,
        poll_interval: float = 30.0,
        optional: bool = False,
        name: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.path = path.strip("/")
        self.mount = mount.strip("/")
        self._token = Secret(token)
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.timeout = timeout
        super().__init__(name or f"vault:{self.mount}/{self.path}", optional=optional)
        _deps.require("aiohttp", "config.vault()", extra="http")

    async def fetch(self) -> dict[str, Any]:
        import aiohttp

        headers = {"X-Vault-Token": self._token.reveal()}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        url = f"{self.url}/v1/{self.mount}/data/{self.path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.get(url, headers=headers) as resp,
            ):
                if resp.status == 404:
                    raise ConfigError(f"{self.name}: no such secret")
                if resp.status in (401, 403):
                    raise ConfigError(f"{self.name}: permission denied (HTTP {resp.status})")
                if resp.status != 200:
                    raise ConfigError(f"{self.name}: Vault returned HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, asyncio.TimeoutError) as exc:
            raise ConfigError(
                f"{self.name}: cannot reach {redact(self.url)}: {type(exc).__name__}"
            ) from None
        data = (body.get("data") or {}).get("data")
        if data is None:
            return {}  # the latest version was deleted
        if not isinstance(data, dict):
            raise ConfigError(f"{self.name}: unexpected response shape")
        return _wrap(data)  # type: ignore[no-any-return]

    def changes(self) -> AsyncIterator[None]:
        return poll_changes(self, self.poll_interval)

    def __repr__(self) -> str:
        return f"<VaultSource {self.name!r} token={self._token!r}>"


def vault(
    url: str,
    path: str,
    *,
    token: str,
    mount: str = "secret",
    namespace: str | None = None,
    poll_interval: float = 30.0,
    optional: bool = False,
    name: str | None = None,
    timeout: float = 5.0,
) -> VaultSource:
    """The KV v2 secret `path` under `mount` at `url`; all its values are secret."""
    return VaultSource(
        url,
        path,
        token=token,
        mount=mount,
        namespace=namespace,
        poll_interval=poll_interval,
        optional=optional,
        name=name,
        timeout=timeout,
    )
