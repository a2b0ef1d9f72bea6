"""`nats://`: the registry in a NATS JetStream key-value bucket.

URL: `nats://host:port?bucket=microstd_registry` (a cluster: list its servers,
`nats://h1:4222,nats://h2:4222,nats://h3:4222?replicas=3`). Each node is a key
`NAME.NODE` holding its JSON record with its expiry time; lookups ignore
expired records and delete them, and the bucket's `max_age` (the `max_age`
option, default one hour) bounds what a crashed node can leave behind.
`replicas` (1 to 5, default 1) is how many cluster servers keep the bucket
when the registry creates it: with `replicas=3` on a three-server cluster the
registrations stay readable and writable while any one server is down (with
1, they live on one server and are gone while it is). An existing bucket
keeps the replicas it was created with.
`watch` re-reads on every update the bucket's watcher delivers.

Connection, timeouts and errors are `microstd._engines.nats`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``, ``reconnect_time_wait``,
``max_reconnect_attempts``), shared with every store and broker on the same
URL: it reconnects without limit, and while it is down a call waits up to
``timeout`` for it, then raises `ConnectionFailed`. A watch re-reads the whole
registry on every hint and at least every `poll_interval`; a watch whose
re-read fails ends with `ConnectionFailed`. When the server the client is on
dies, the client reconnects to another server of the list (or one it learned
from the cluster) and the re-read waits up to ``timeout`` for that, so a
watch usually goes on across a failover; one whose re-read fails meanwhile
(the bucket's stream still electing a leader) ends with `ConnectionFailed`.
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
from microstd._engines import nats_kv
from microstd._tasks import stop_task
from microstd.errors import Closed, ConnectionFailed, DecodeError, InvalidArgument
from microstd.registry.base import ChangeFeed, EventChangeFeed, NodeRecord, Registry

__all__ = ["NatsRegistry"]

DEFAULT_BUCKET = "microstd_registry"


class _NatsFeed(EventChangeFeed):
    def __init__(self, watcher: Any) -> None:
        super().__init__()
        self._watcher = watcher
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
                self.mark_changed()

    async def close(self) -> None:
        # nats-py can swallow a cancellation mid-request: cancelled until it ends, bounded.
        await stop_task(self._task, "registry KV watcher")
        # Stopping unsubscribes, which waits on the server: bounded, so a close
        # during a failover cannot hang (the server drops the subscription anyway).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._watcher.stop(), 5.0)


class NatsRegistry(Registry):
    """Registry on a NATS JetStream KV bucket (nats-py)."""

    def __init__(
        self,
        url: str | engine.NatsEndpoint,
        *,
        bucket: str = DEFAULT_BUCKET,
        max_age: float = 3600.0,
        replicas: int | str = 1,
        **connection: Any,
    ) -> None:
        """`url` is a ``nats://`` URL (or an endpoint); `connection` holds the engine's
        options. `replicas` is how many cluster servers keep the bucket when this
        registry creates it (3 on a three-server cluster)."""
        self.replicas = engine.replicas_option(replicas)
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
        replicas = mine.pop("replicas", 1)
        if mine:
            raise InvalidArgument(f"unknown nats registry options: {sorted(mine)}")
        return cls(endpoint, bucket=bucket, max_age=max_age, replicas=replicas)

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
                        KeyValueConfig(
                            bucket=self.bucket,
                            history=1,
                            ttl=self.max_age,
                            replicas=self.replicas,
                        )
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
        assert self._conn is not None
        # The keys come from the stream's info (nats_kv), not from kv.keys(): that
        # makes an ephemeral consumer per call, and on a cluster with a server
        # down the server may place it on the dead one and never answer (about
        # one lookup in three timed out, for as long as the server stayed down).
        nc = await self._conn.ready("registry lookup")
        subjects = f"{name}.>" if name else ">"
        timeout = self._endpoint.timeouts.request
        with self._errors("lookup"):
            keys = await nats_kv.kv_names(nc, self.bucket, subjects, timeout=timeout)
        now = time.time()
        out = []
        for key in keys:
            with self._errors("lookup"):
                try:
                    entry = await kv.get(key)
                    record = NodeRecord.decode(entry.value or b"")
                except (jerr.KeyNotFoundError, jerr.InvalidKeyError, DecodeError):
                    continue  # deleted (a tombstone), or a foreign key
            if not record.alive(now):
                # Expired: the node stopped heartbeating. Clean up, unless it re-registered.
                with contextlib.suppress(Exception):
                    await kv.delete(key, last=entry.revision)
            out.append(record)
        return out

    async def _changes(self) -> ChangeFeed | None:
        kv = await self._bucket("watch")
        try:
            with self._errors("watch"):
                watcher = await kv.watchall(ignore_deletes=False, include_history=False)
        except ConnectionFailed:
            # The watcher is an ephemeral consumer, which a cluster with a server
            # down may fail to create: the watch then polls (latency, not events).
            return None
        return _NatsFeed(watcher)
