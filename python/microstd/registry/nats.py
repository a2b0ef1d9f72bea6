"""`nats://`: the registry in a NATS JetStream key-value bucket.

URL: `nats://host:port?bucket=microstd_registry`. Each node is a key
`NAME.NODE` holding its JSON record with its expiry time; lookups ignore
expired records and delete them, and the bucket's `max_age` (the `max_age`
option, default one hour) bounds what a crashed node can leave behind.
`watch` re-reads on every update the bucket's watcher delivers.

Connection, timeouts and errors are `microstd._engines.nats`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``, ``reconnect_time_wait``,
``max_reconnect_attempts``), shared with every store and broker on the same
URL: it reconnects without limit, and while it is down a call waits up to
``timeout`` for it, then raises `ConnectionFailed`. A watch re-reads the whole
registry on every hint and at least every `poll_interval`; a watch whose
re-read fails ends with `ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import nats.errors as nerr
import nats.js.errors as jerr
from nats.js.api import KeyValueConfig

from microstd._backends import ParsedURL
from microstd._engines import nats as engine
from microstd.errors import Closed, DecodeError, InvalidArgument
from microstd.registry.base import ChangeFeed, NodeRecord, Registry

__all__ = ["NatsRegistry"]

DEFAULT_BUCKET = "microstd_registry"


class _NatsFeed(ChangeFeed):
    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher
        self._event = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # The KV watcher is an ordered consumer: nats-py makes it again after a
        # reconnection. If it fails for good, the task ends and watch polls.
        with contextlib.suppress(Exception):
            while True:
                try:
                    await self._watcher.updates(timeout=3600)
                except nerr.TimeoutError:
                    continue
                self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self._watcher.stop()


class NatsRegistry(Registry):
    """Registry on a NATS JetStream KV bucket (nats-py)."""

    def __init__(
        self,
        url: str | engine.NatsEndpoint,
        *,
        bucket: str = DEFAULT_BUCKET,
        max_age: float = 3600.0,
        **connection: Any,
    ) -> None:
        """`url` is a ``nats://`` URL (or an endpoint); `connection` holds the engine's
        options."""
        if isinstance(url, engine.NatsEndpoint):
            if connection:
                raise InvalidArgument(f"unknown nats registry options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.NatsEndpoint.from_url(url, connection)
            if rest:
                raise InvalidArgument(f"unknown nats registry options: {sorted(rest)}")
        self.bucket = bucket
        self.max_age = max_age
        self._conn: engine.NatsConnection | None = None
        self._kv: Any = None
        self._kv_nc: Any = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> NatsRegistry:
        endpoint, mine = engine.NatsEndpoint.from_url(parsed, options)
        bucket = str(mine.pop("bucket", DEFAULT_BUCKET))
        max_age = float(mine.pop("max_age", 3600.0))
        if mine:
            raise InvalidArgument(f"unknown nats registry options: {sorted(mine)}")
        return cls(endpoint, bucket=bucket, max_age=max_age)

    def __repr__(self) -> str:
        return f"NatsRegistry({self._endpoint.redacted!r}, bucket={self.bucket!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"registry {what}")

    async def connect(self) -> None:
        await self._bucket("connect")

    async def close(self) -> None:
        conn, self._conn, self._kv = self._conn, None, None
        if conn is not None:
            await engine.release(conn)

    async def _bucket(self, what: str) -> Any:
        """The bucket on the live connection (see `NatsConnection.ready`)."""
        if self._conn is None:
            if self.closed:
                raise Closed("registry is closed")
            self._conn = await engine.acquire(self._endpoint)
        nc = await self._conn.ready(f"registry {what}")
        if self._kv is None or self._kv_nc is not nc:
            js = self._conn.jetstream(f"registry {what}")
            with self._errors(what):
                try:
                    kv = await js.key_value(self.bucket)
                except jerr.BucketNotFoundError:
                    kv = await js.create_key_value(
                        KeyValueConfig(bucket=self.bucket, history=1, ttl=self.max_age)
                    )
            self._kv, self._kv_nc = kv, nc
        return self._kv

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        kv = await self._bucket("register")
        with self._errors("register"):
            await kv.put(f"{record.name}.{record.node_id}", record.encode())

    async def _remove(self, name: str, node_id: str) -> None:
        kv = await self._bucket("deregister")
        with self._errors("deregister"):
            await kv.delete(f"{name}.{node_id}")

    async def _load(self, name: str | None) -> list[NodeRecord]:
        kv = await self._bucket("lookup")
        with self._errors("lookup"):
            try:
                keys = await kv.keys()
            except jerr.NoKeysError:
                return []
        now = time.time()
        out = []
        for key in keys:
            if name is not None and not key.startswith(f"{name}."):
                continue
            with self._errors("lookup"):
                try:
                    entry = await kv.get(key)
                    record = NodeRecord.decode(entry.value or b"")
                except (jerr.KeyNotFoundError, DecodeError):
                    continue
            if not record.alive(now):
                # Expired: the node stopped heartbeating. Clean up, unless it re-registered.
                with contextlib.suppress(Exception):
                    await kv.delete(key, last=entry.revision)
            out.append(record)
        return out

    async def _changes(self) -> ChangeFeed:
        kv = await self._bucket("watch")
        with self._errors("watch"):
            watcher = await kv.watchall(ignore_deletes=False, include_history=False)
        return _NatsFeed(watcher)
