"""`etcd://`: the registry in etcd, through its v3 JSON gateway (etcd 3.4+).

URL: `etcd://host:port?prefix=/microstd/registry/` (`etcds://` for TLS). Each
node is a key `PREFIX NAME/NODE` attached to a lease of the node's TTL; a
heartbeat keeps the lease alive, so a node whose process dies is removed by
etcd itself. `watch` follows a `/v3/watch` stream to re-read on every change.
Talks HTTP with aiohttp: no gRPC dependency.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from typing import Any

from microstd import codec
from microstd._backends import ParsedURL
from microstd.errors import ConnectionFailed, DecodeError
from microstd.registry.base import ChangeFeed, NodeRecord, Registry
from microstd.sync._etcdapi import int_field, kvs_of

__all__ = ["EtcdRegistry"]


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: str) -> str:
    # The range [prefix, prefix_end) is every key starting with prefix.
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


class _EtcdFeed(ChangeFeed):
    def __init__(self, response: Any) -> None:
        self._response = response
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for _line in self._response.content:
                self._event.set()
        # The stream ended (server gone): wake the watcher so it re-reads and
        # notices; from then on it polls.
        self._event.set()

    async def wait(self, timeout: float) -> None:
        if self._task.done() and not self._event.is_set():
            await asyncio.sleep(timeout)  # the stream is gone: poll
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._response.close()


class EtcdRegistry(Registry):
    """Registry on etcd v3 (JSON gateway over aiohttp); nodes live on leases."""

    def __init__(self, base_url: str, *, prefix: str = "/microstd/registry/") -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._session: Any = None
        self._leases: dict[tuple[str, str], tuple[str, int]] = {}

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> EtcdRegistry:
        query = dict(parsed.query)
        prefix = str(options.pop("prefix", query.pop("prefix", "/microstd/registry/")))
        if options:
            raise TypeError(f"unknown etcd registry options: {sorted(options)}")
        scheme = "https" if parsed.scheme == "etcds" else "http"
        port = parsed.port or 2379
        return cls(f"{scheme}://{parsed.host or '127.0.0.1'}:{port}", prefix=prefix)

    def __repr__(self) -> str:
        return f"EtcdRegistry({self.base_url!r})"

    async def connect(self) -> None:
        if self._session is not None:
            return
        import aiohttp

        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._session = session
        try:
            async with session.get(f"{self.base_url}/health") as resp:
                if resp.status >= 500:
                    raise ConnectionFailed(f"etcd at {self.base_url} is unhealthy ({resp.status})")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self._drop_session()
            raise ConnectionFailed(f"cannot reach etcd at {self.base_url}: {exc}") from exc
        except ConnectionFailed:
            await self._drop_session()
            raise

    async def _drop_session(self) -> None:
        # A failed connect drops its session but leaves the registry open to retry.
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def close(self) -> None:
        await self._drop_session()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        if self._session is None:
            await self.connect()
        try:
            async with self._session.post(f"{self.base_url}{path}", json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise ConnectionFailed(f"etcd {path} answered {resp.status}: {data}")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            raise ConnectionFailed(f"etcd {path} failed: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _key(self, name: str, node_id: str) -> str:
        return f"{self.prefix}{name}/{node_id}"

    async def _lease(self, key: tuple[str, str], ttl: float) -> str:
        seconds = max(1, math.ceil(ttl))
        held = self._leases.get(key)
        if held is not None and held[1] == seconds:
            answer = await self._post("/v3/lease/keepalive", {"ID": held[0]})
            if int_field(answer, "result", "TTL", default=0) > 0:
                return held[0]
        granted = await self._post("/v3/lease/grant", {"TTL": str(seconds)})
        lease_id = str(int_field(granted, "ID"))
        self._leases[key] = (lease_id, seconds)
        if held is not None:
            # The key moves to the new lease with the put below; the old one is garbage.
            with contextlib.suppress(ConnectionFailed):
                await self._post("/v3/lease/revoke", {"ID": held[0]})
        return lease_id

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        body: dict[str, Any] = {
            "key": _b64(self._key(record.name, record.node_id)),
            "value": _b64(record.encode()),
        }
        if ttl is not None:
            body["lease"] = await self._lease(record.key, ttl)
        else:
            self._leases.pop(record.key, None)
        await self._post("/v3/kv/put", body)

    async def _remove(self, name: str, node_id: str) -> None:
        await self._post("/v3/kv/deleterange", {"key": _b64(self._key(name, node_id))})
        held = self._leases.pop((name, node_id), None)
        if held is not None:
            with contextlib.suppress(ConnectionFailed):
                await self._post("/v3/lease/revoke", {"ID": held[0]})

    async def _load(self, name: str | None) -> list[NodeRecord]:
        prefix = f"{self.prefix}{name}/" if name else self.prefix
        answer = await self._post(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)}
        )
        out = []
        for kv in kvs_of(answer):
            value = kv.get("value", "")
            if not isinstance(value, str):
                continue  # not an etcd value: skipped, like a foreign record
            try:
                out.append(NodeRecord.decode(base64.b64decode(value, validate=True)))
            except (DecodeError, ValueError):
                continue  # not a record of ours
        return out

    async def _changes(self) -> ChangeFeed:
        import aiohttp

        if self._session is None:
            await self.connect()
        body = {"create_request": {"key": _b64(self.prefix), "range_end": _prefix_end(self.prefix)}}
        try:
            response = await self._session.post(
                f"{self.base_url}/v3/watch",
                data=codec.json.dumps(body),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"etcd watch failed: {exc}") from exc
        return _EtcdFeed(response)
