"""`redis://`: the registry in Redis, one key per node with a TTL, plus a change channel.

URL: `redis://[:password@]host:port/db?prefix=microstd:registry:`. Each node is a
key `PREFIX svc/NAME/NODE` holding its JSON record, set with `PX` so Redis drops
it when its TTL runs out; every change is also published on `PREFIX events`
so watchers re-read at once instead of waiting for their poll. Redis behind
Sentinel takes `redis+sentinel://s1:26379,s2,s3/SERVICE/DB?prefix=...`
(`microstd._engines.redis_sentinel`): after a failover the next call finds the
new master. Replication is asynchronous there: a registration the old master
acknowledged just before it died may be missing on the new one, until the
node's next heartbeat (`register` again) writes it back. Redis Cluster takes
`redis+cluster://n1:7000,n2:7000/?prefix=...`: every key carries the prefix's
hash tag (`{microstd:registry:}`), so a lookup's SCAN (of that slot's master)
and MGET stay in one slot and a registry lives on one shard; a registration
is the SET then its hint PUBLISH (redis-py's cluster pipeline refuses PUBLISH
in a MULTI).

Connection, timeouts and errors are `microstd._engines.redis`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``; 5, 5 and 10 s). A watch
re-reads the whole registry on every hint and at least every `poll_interval`,
so a lost change channel costs latency, not events: it reconnects on its own.
A watch whose re-read fails (the server is away) ends with `ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import redis as engine
from microstd._engines.redis_cluster import hash_tag
from microstd.errors import Closed, ConnectionFailed, DecodeError, InvalidArgument
from microstd.registry.base import ChangeFeed, NodeRecord, Registry

__all__ = ["RedisRegistry"]

DEFAULT_PREFIX = "microstd:registry:"


class _RedisFeed(ChangeFeed):
    """Hints from the change channel; while the channel is lost, `wait` just waits
    (the watch then polls) and the next call reconnects it."""

    def __init__(self, subscriber: engine.Subscriber) -> None:
        self._subscriber = subscriber

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if await self._subscriber.get(timeout) is None:
                return
            # One hint is enough: take what else is queued without waiting.
            while await self._subscriber.get(0) is not None:
                pass
        except ConnectionFailed:
            left = deadline - loop.time()
            if left > 0:
                await asyncio.sleep(left)

    async def close(self) -> None:
        await self._subscriber.aclose()


class RedisRegistry(Registry):
    """Registry on Redis (redis-py asyncio). Keys expire with their TTL."""

    def __init__(
        self, url: str | engine.RedisEndpoint, *, prefix: str = DEFAULT_PREFIX, **connection: Any
    ) -> None:
        """`url` is a ``redis://`` URL (or an endpoint); `connection` holds the engine's
        options (`connect_timeout`, `timeout`, `ping_interval`)."""
        if isinstance(url, engine.RedisEndpoint):
            if connection:
                raise InvalidArgument(f"unknown redis registry options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.RedisEndpoint.from_url(url, connection)
            if rest:
                raise InvalidArgument(f"unknown redis registry options: {sorted(rest)}")
        self.prefix = prefix
        # On a cluster every key carries the prefix's hash tag, so a lookup's MGET
        # and a registration's MULTI are in one slot: a registry lives on one shard.
        self._cluster = self._endpoint.cluster is not None
        self._keys = hash_tag(prefix) if self._cluster else prefix
        self._conn: engine.RedisConnection | None = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisRegistry:
        endpoint, mine = engine.RedisEndpoint.from_url(parsed, options, area=("prefix",))
        prefix = str(mine.pop("prefix", DEFAULT_PREFIX))
        if mine:
            raise InvalidArgument(f"unknown redis registry options: {sorted(mine)}")
        return cls(endpoint, prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisRegistry({self._endpoint.redacted!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"registry {what}")

    async def connect(self) -> None:
        if self._conn is not None:
            return
        conn = await engine.acquire(self._endpoint)
        try:
            await conn.ping("registry connect")
        except BaseException:
            await engine.release(conn)
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)

    async def _client(self) -> Any:
        if self._conn is None:
            await self.connect()
        if self._conn is None:
            raise Closed("registry is closed")
        return self._conn.client

    def _key(self, name: str, node_id: str) -> str:
        return f"{self._keys}svc/{name}/{node_id}"

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        client = await self._client()
        px = max(1, math.ceil(ttl * 1000)) if ttl is not None else None
        if self._cluster:
            # redis-py's cluster pipeline refuses PUBLISH: the write, then its hint
            # (a lost hint costs a watcher one poll interval, never the record).
            with self._errors("register"):
                await client.set(self._key(record.name, record.node_id), record.encode(), px=px)
                await client.publish(f"{self._keys}events", record.name)
            return
        pipe = client.pipeline(transaction=True)
        pipe.set(self._key(record.name, record.node_id), record.encode(), px=px)
        pipe.publish(f"{self._keys}events", record.name)
        with self._errors("register"):
            await pipe.execute()

    async def _remove(self, name: str, node_id: str) -> None:
        client = await self._client()
        if self._cluster:
            with self._errors("deregister"):
                await client.delete(self._key(name, node_id))
                await client.publish(f"{self._keys}events", name)
            return
        pipe = client.pipeline(transaction=True)
        pipe.delete(self._key(name, node_id))
        pipe.publish(f"{self._keys}events", name)
        with self._errors("deregister"):
            await pipe.execute()

    async def _load(self, name: str | None) -> list[NodeRecord]:
        client = await self._client()
        # Names are validated to exclude glob characters, so they are safe in MATCH.
        pattern = f"{self._keys}svc/{name}/*" if name else f"{self._keys}svc/*"
        if self._cluster:
            # `{` and `}` are literal in MATCH; a tag's `[`, `*`, ... must not be.
            pattern = _glob_escape(self._keys) + pattern[len(self._keys) :]

        async def read() -> list[Any]:
            where: dict[str, Any] = {}
            if self._cluster:
                # The registry is one slot: scan only its master, not every one.
                await client.initialize()
                where["target_nodes"] = client.get_node_from_key(f"{self._keys}events")
            keys = [k async for k in client.scan_iter(match=pattern, count=500, **where)]
            return list(await client.mget(keys)) if keys else []

        assert self._conn is not None
        values = await self._conn.read("registry lookup", read)
        out = []
        for value in values:
            if value is None:  # expired between SCAN and MGET
                continue
            try:
                out.append(NodeRecord.decode(value))
            except DecodeError:
                continue  # a foreign key under our prefix; not ours to interpret
        return out

    async def _changes(self) -> ChangeFeed:
        await self._client()
        assert self._conn is not None
        subscriber = self._conn.subscriber()
        try:
            await subscriber.subscribe(f"{self._keys}events")
        except BaseException:
            await subscriber.aclose()
            raise
        return _RedisFeed(subscriber)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
