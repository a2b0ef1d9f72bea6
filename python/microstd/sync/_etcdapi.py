"""The locks' view of the shared etcd client (`microstd._engines.etcd`).

The lock and election algorithms in `microstd.sync.etcd` were written against
this small interface (`EtcdAPI.call`, `EtcdAPI.watch` and the field helpers);
it now delegates to the one etcd client every area uses (connection, timeouts,
credentials, error mapping), keeping the two conventions the algorithms rely on:
every error answer from etcd is a `ConnectionFailed` (the engine's
`EtcdAPIError` included), and a watch stream the server closes ends quietly
(the caller then reads the state again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from microstd._engines import etcd as engine
from microstd._engines.etcd import b64, field, int_field, kvs_of, prefix_end, unb64
from microstd.errors import ConnectionFailed

__all__ = [
    "DEFAULT_TIMEOUT",
    "EtcdAPI",
    "b64",
    "field",
    "int_field",
    "kvs_of",
    "prefix_end",
    "unb64",
]

#: Seconds an etcd request may take before it fails with `ConnectionFailed`.
DEFAULT_TIMEOUT = 5.0


class EtcdAPI:
    """POSTs JSON to one etcd server through the shared engine client; every failure
    is `ConnectionFailed`.

    `base` is ``http(s)://host:port`` (or ``etcd://``, or an endpoint); every
    request is bounded by `timeout` seconds (or the `timeout` given to that call).
    """

    def __init__(self, base: str | engine.EtcdEndpoint, timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(base, engine.EtcdEndpoint):
            self.endpoint = base
        else:
            options = {"timeout": timeout, "connect_timeout": timeout}
            self.endpoint, _ = engine.EtcdEndpoint.from_url(base, options)
        self._client: engine.EtcdClient | None = None

    async def _ensure(self) -> engine.EtcdClient:
        if self._client is None:
            self._client = await engine.acquire(self.endpoint)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await engine.release(client)

    async def call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """One request; an `idempotent` one (doing it twice is doing it once) may be
        sent again, to another member of a cluster, after a failure that leaves it
        ambiguous (see `microstd._engines.etcd`)."""
        client = await self._ensure()
        try:
            return await client.call(
                path, body, f"locks {path}", timeout=timeout, idempotent=idempotent
            )
        except engine.EtcdAPIError as exc:
            raise ConnectionFailed(str(exc)) from exc

    async def grant(self, ttl: int) -> tuple[str, int]:
        """A new lease of `ttl` seconds: its ID and granted TTL (safe to repeat: see
        `EtcdClient.grant_lease`)."""
        client = await self._ensure()
        try:
            return await client.grant_lease(ttl, "locks lease/grant")
        except engine.EtcdAPIError as exc:
            raise ConnectionFailed(str(exc)) from exc

    async def watch(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The `result` objects of a streaming watch, as they arrive; ends quietly
        when the server closes the stream."""
        client = await self._ensure()
        try:
            async for result in client.watch(body, "locks watch"):
                yield result
        except engine.EtcdStreamEnded:
            return
        except engine.EtcdAPIError as exc:
            raise ConnectionFailed(str(exc)) from exc
