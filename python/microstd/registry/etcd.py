"""`etcd://`: the registry in etcd, through its v3 JSON gateway (etcd 3.4+).

URL: `etcd://host:port?prefix=/microstd/registry/` (`etcds://` for TLS), or a
cluster's members, `etcd://h1:2379,h2:2379,h3:2379?prefix=...` (see
docs/clusters.md: requests and the watch move to another member). Each
node is a key `PREFIX NAME/NODE` attached to a lease of the node's TTL; a
heartbeat keeps the lease alive, so a node whose process dies is removed by
etcd itself. `watch` follows a `/v3/watch` stream to re-read on every change.

Connection, timeouts and errors are `microstd._engines.etcd`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``; 5, 5 and 10 s; on a
cluster ``attempt_timeout``, a third of `timeout`). A watch
re-reads the whole registry on every hint and at least every `poll_interval`;
a lost watch stream is opened again on its own, so it costs latency, not
events. A watch whose re-read fails (the server is away) ends with
`ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import etcd as engine
from microstd.errors import Closed, ConnectionFailed, DecodeError, InvalidArgument
from microstd.registry.base import ChangeFeed, NodeRecord, Registry

__all__ = ["EtcdRegistry"]

log = logging.getLogger("microstd.registry")

DEFAULT_PREFIX = "/microstd/registry/"
_LEASE_NOT_FOUND = 5  # gRPC NOT_FOUND: "requested lease not found"
# Pause before opening a lost watch stream again (doubling up to the max).
_RETRY_MIN = 0.2
_RETRY_MAX = 5.0


class _EtcdFeed(ChangeFeed):
    """Sets an event on every watch response; reopens the stream when it is lost."""

    def __init__(self, client: engine.EtcdClient, prefix: str) -> None:
        self._client = client
        self._request = {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)}
        self._event = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        pause = _RETRY_MIN
        while True:
            try:
                async for _result in self._client.watch(self._request, "registry watch"):
                    self._event.set()
                    pause = _RETRY_MIN
            except ConnectionFailed as exc:
                log.debug("registry watch stream lost, reopening: %s", exc)
            # Whatever changed meanwhile is found by the re-read this wakes.
            self._event.set()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX)

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class EtcdRegistry(Registry):
    """Registry on etcd v3 (JSON gateway over aiohttp); nodes live on leases."""

    def __init__(
        self,
        base_url: str | engine.EtcdEndpoint,
        *,
        prefix: str = DEFAULT_PREFIX,
        **connection: Any,
    ) -> None:
        """`base_url` is ``etcd://host:port`` or ``http(s)://host:port`` (or an
        endpoint); `connection` holds the engine's options."""
        if isinstance(base_url, engine.EtcdEndpoint):
            if connection:
                raise InvalidArgument(f"unknown etcd registry options: {sorted(connection)}")
            self._endpoint = base_url
        else:
            self._endpoint, rest = engine.EtcdEndpoint.from_url(base_url, connection)
            if rest:
                raise InvalidArgument(f"unknown etcd registry options: {sorted(rest)}")
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._client: engine.EtcdClient | None = None
        self._leases: dict[tuple[str, str], tuple[str, int]] = {}

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> EtcdRegistry:
        endpoint, mine = engine.EtcdEndpoint.from_url(parsed, options)
        prefix = str(mine.pop("prefix", DEFAULT_PREFIX))
        if mine:
            raise InvalidArgument(f"unknown etcd registry options: {sorted(mine)}")
        return cls(endpoint, prefix=prefix)

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` of the server."""
        return self._endpoint.base

    def __repr__(self) -> str:
        return f"EtcdRegistry({self._endpoint.redacted!r})"

    async def connect(self) -> None:
        client = await self._etcd()
        await client.call("maintenance/status", {}, "registry connect", idempotent=True)

    async def _etcd(self) -> engine.EtcdClient:
        if self._client is None:
            if self.closed:
                raise Closed("registry is closed")
            self._client = await engine.acquire(self._endpoint)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await engine.release(client)

    async def _call(
        self, path: str, body: dict[str, Any], what: str, *, idempotent: bool = True
    ) -> dict[str, Any]:
        """One request; every one the registry makes is safe to send twice (a read,
        a plain put or delete, a keepalive or revoke, and a lease grant, whose ID the
        client picks: see `EtcdClient.grant_lease`), so on a cluster it is sent to the
        next member after any failure, or after `attempt_timeout` on a silent one."""
        client = await self._etcd()
        return await client.call(path, body, f"registry {what}", idempotent=idempotent)

    def _key(self, name: str, node_id: str) -> str:
        return f"{self.prefix}{name}/{node_id}"

    async def _lease(self, key: tuple[str, str], ttl: float) -> str:
        seconds = max(1, math.ceil(ttl))
        held = self._leases.get(key)
        if held is not None and held[1] == seconds:
            answer = await self._call("lease/keepalive", {"ID": held[0]}, "register")
            if engine.int_field(answer, "result", "TTL", default=0) > 0:
                return held[0]
        client = await self._etcd()
        # The lease's ID is chosen by the client: a grant sent again is the same grant.
        lease_id, _ = await client.grant_lease(seconds, "registry register")
        self._leases[key] = (lease_id, seconds)
        if held is not None:
            # The key moves to the new lease with the put below; the old one is garbage.
            with contextlib.suppress(ConnectionFailed, engine.EtcdAPIError):
                await self._call("lease/revoke", {"ID": held[0]}, "register")
        return lease_id

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        body: dict[str, Any] = {
            "key": engine.b64(self._key(record.name, record.node_id)),
            "value": engine.b64(record.encode()),
        }
        if ttl is None:
            self._leases.pop(record.key, None)
            await self._call("kv/put", body, "register")
            return
        body["lease"] = await self._lease(record.key, ttl)
        try:
            await self._call("kv/put", body, "register")
        except engine.EtcdAPIError as exc:
            if exc.code != _LEASE_NOT_FOUND:
                raise
            # The lease ran out between keepalive and put: take a new one, once.
            self._leases.pop(record.key, None)
            body["lease"] = await self._lease(record.key, ttl)
            await self._call("kv/put", body, "register")

    async def _remove(self, name: str, node_id: str) -> None:
        key = engine.b64(self._key(name, node_id))
        await self._call("kv/deleterange", {"key": key}, "deregister")
        held = self._leases.pop((name, node_id), None)
        if held is not None:
            with contextlib.suppress(ConnectionFailed, engine.EtcdAPIError):
                await self._call("lease/revoke", {"ID": held[0]}, "deregister")

    async def _load(self, name: str | None) -> list[NodeRecord]:
        prefix = f"{self.prefix}{name}/" if name else self.prefix
        answer = await self._call(
            "kv/range",
            {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)},
            "lookup",
        )
        out = []
        for kv in engine.kvs_of(answer):
            value = kv.get("value", "")
            if not isinstance(value, str):
                continue  # not an etcd value: skipped, like a foreign record
            try:
                out.append(NodeRecord.decode(base64.b64decode(value, validate=True)))
            except (DecodeError, ValueError):
                continue  # not a record of ours
        return out

    async def _changes(self) -> ChangeFeed:
        return _EtcdFeed(await self._etcd(), self.prefix)
