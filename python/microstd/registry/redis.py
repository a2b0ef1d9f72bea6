"""`redis://`: the registry in Redis, one key per node with a TTL, plus a change channel.

URL: `redis://[:password@]host:port/db?prefix=microstd:registry:`. Each node is a
key `PREFIX svc/NAME/NODE` holding its JSON record, set with `PX` so Redis drops
it when its TTL runs out; every change is also published on `PREFIX events`
so watchers re-read at once instead of waiting for their poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from microstd._backends import ParsedURL
from microstd.errors import ConnectionFailed, DecodeError
from microstd.registry.base import ChangeFeed, NodeRecord, Registry

__all__ = ["RedisRegistry"]


class _RedisFeed(ChangeFeed):
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub
        self._broken = False

    async def wait(self, timeout: float) -> None:
        from redis.exceptions import RedisError

        if self._broken:
            await asyncio.sleep(timeout)
            return
        try:
            await self._wait(timeout)
        except (RedisError, OSError):
            # The subscription connection failed: watch keeps going by polling.
            self._broken = True

    async def _wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # get_message returns on the first message of any kind; drain what is queued.
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if msg is not None:
                while await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass
                return

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()


class RedisRegistry(Registry):
    """Registry on Redis (redis-py asyncio). Keys expire with their TTL."""

    def __init__(self, url: str, *, prefix: str = "microstd:registry:", redacted: str = "") -> None:
        self._url = url
        self._redacted = redacted or url
        self.prefix = prefix
        self._client: Any = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisRegistry:
        query = dict(parsed.query)
        prefix = str(options.pop("prefix", query.pop("prefix", "microstd:registry:")))
        if options:
            raise TypeError(f"unknown redis registry options: {sorted(options)}")
        base = parsed.raw.split("?", 1)[0]
        return cls(base, prefix=prefix, redacted=parsed.redacted.split("?", 1)[0])

    def __repr__(self) -> str:
        return f"RedisRegistry({self._redacted!r})"

    async def connect(self) -> None:
        if self._client is not None:
            return
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis.from_url(self._url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise ConnectionFailed(f"cannot reach redis at {self._redacted}: {exc}") from exc
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _conn(self) -> Any:
        if self._client is None:
            await self.connect()
        return self._client

    def _key(self, name: str, node_id: str) -> str:
        return f"{self.prefix}svc/{name}/{node_id}"

    async def _call(self, what: str, coro: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise ConnectionFailed(f"redis registry {what} failed: {exc}") from exc

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        client = await self._conn()
        px = max(1, math.ceil(ttl * 1000)) if ttl is not None else None
        pipe = client.pipeline(transaction=True)
        pipe.set(self._key(record.name, record.node_id), record.encode(), px=px)
        pipe.publish(f"{self.prefix}events", record.name)
        await self._call("register", pipe.execute())

    async def _remove(self, name: str, node_id: str) -> None:
        client = await self._conn()
        pipe = client.pipeline(transaction=True)
        pipe.delete(self._key(name, node_id))
        pipe.publish(f"{self.prefix}events", name)
        await self._call("deregister", pipe.execute())

    async def _load(self, name: str | None) -> list[NodeRecord]:
        client = await self._conn()
        # Names are validated to exclude glob characters, so they are safe in MATCH.
        pattern = f"{self.prefix}svc/{name}/*" if name else f"{self.prefix}svc/*"
        keys = await self._call("lookup", _collect(client.scan_iter(match=pattern, count=500)))
        if not keys:
            return []
        values = await self._call("lookup", client.mget(keys))
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
        client = await self._conn()
        pubsub = client.pubsub()
        await self._call("watch", pubsub.subscribe(f"{self.prefix}events"))
        return _RedisFeed(pubsub)


async def _collect(keys: Any) -> list[Any]:
    return [k async for k in keys]
