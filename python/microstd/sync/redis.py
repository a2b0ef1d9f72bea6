"""`redis://`: locks on one Redis server.

A lock is the key `<prefix>lock:<name>` holding `<owner>|<token>`, set with
`SET NX PX`; its fencing token comes from `INCR <prefix>token:<name>` (the
counter never expires, so tokens keep increasing per name). Release and
refresh are compare-and-delete / compare-and-extend Lua scripts, so only the
holder of that very lease can end or extend it. A release publishes on
`<prefix>released:<name>`; waiters subscribe there and also retry on a
bounded timer (the lock's remaining TTL, at most 0.5 s), so a crashed
holder's expiry is noticed without busy polling. Waiters are not queued
FIFO: the first retry after a release wins.

Elections are locks under `<prefix>election:<name>`, held by the candidate
and renewed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from microstd._backends import ParsedURL
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._election import RenewingLeadership
from microstd.sync.base import (
    DEFAULT_TTL,
    Leadership,
    Lease,
    Locks,
    validate_name,
    validate_ttl,
    validate_wait,
)
from microstd.sync.memory import default_owner

__all__ = ["RedisLease", "RedisLocks"]

_MAX_RETRY = 0.5

# KEYS: lock, counter. ARGV: owner, ttl ms. Returns {token, 0} or {0, pttl}.
_ACQUIRE = """
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then return {0, pttl} end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'NX', 'PX', ARGV[2])
return {token, 0}
"""

# KEYS: lock. ARGV: value, channel. Compare-and-delete, then wake the waiters.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], '1')
return 1
"""

# KEYS: lock. ARGV: value, ttl ms. Compare-and-extend.
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _translate(exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(f"redis: {type(exc).__name__}: {exc}")


class RedisLease(Lease):
    """A Redis-held lock: compare-and-extend to refresh, compare-and-delete to release."""

    def __init__(self, locks: RedisLocks, key: str, name: str, owner: str, token: int, ttl: float):
        self._locks = locks
        self._key = key
        self.name = name
        self.owner = owner
        self.token = token
        self._ttl = ttl
        self._expires_at = time.time() + ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    @property
    def _value(self) -> str:
        return f"{self.owner}|{self.token}"

    async def refresh(self, ttl: float | None = None) -> None:
        new = self._ttl if ttl is None else validate_ttl(ttl)
        ok = await self._locks._call(self._locks._refresh, [self._key], [self._value, _ms(new)])
        if not ok:
            raise LockLost(f"lock {self.name!r} (token {self.token}) is no longer held")
        self._ttl = new
        self._expires_at = time.time() + new

    async def release(self) -> None:
        ok = await self._locks._call(
            self._locks._release,
            [self._key],
            [self._value, self._locks._channel(self._key)],
        )
        if not ok:
            raise LockLost(f"lock {self.name!r} (token {self.token}) is no longer held")


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve a background request's outcome, so asyncio does not warn of it."""
    if not fut.cancelled():
        fut.exception()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLocks(Locks):
    """Locks and elections on Redis (redis-py's asyncio client)."""

    def __init__(self, url: str, *, prefix: str = "microstd:", owner: str | None = None) -> None:
        import redis.asyncio as aioredis

        self._url = url
        self._prefix = prefix
        self._owner = owner or default_owner()
        self._client: Any = aioredis.Redis.from_url(url, decode_responses=True)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._refresh = self._client.register_script(_REFRESH)

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisLocks:
        query = dict(parsed.query)
        query.update(options)
        netloc = parsed.raw.split("://", 1)[1].split("?", 1)[0]
        return cls(f"redis://{netloc}", **query)

    def __repr__(self) -> str:
        from microstd._backends import redact

        return f"RedisLocks({redact(self._url)!r})"

    async def connect(self) -> None:
        await self._call(self._client.ping)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise _translate(exc) from exc

    def _channel(self, key: str) -> str:
        return f"{self._prefix}released:{key}"

    async def _shielded(self, coro: Any) -> Any:
        """Await `coro` so that cancelling the caller always raises CancelledError.

        redis-py can swallow a cancellation that lands while it opens a
        connection; shielding keeps the request running to its end in the
        background while the caller's cancellation propagates at once.
        """
        inner = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            inner.add_done_callback(_consume)
            raise

    async def _try(self, key: str, counter: str, owner: str, ttl: float) -> tuple[int, float]:
        inner = asyncio.ensure_future(self._call(self._acquire, [key, counter], [owner, _ms(ttl)]))
        try:
            token, pttl = await asyncio.shield(inner)
        except asyncio.CancelledError:
            # The script may still take the lock after we gave up: give it back.
            inner.add_done_callback(lambda f: self._orphaned(f, key, owner))
            raise
        return int(token), max(0.0, int(pttl) / 1000.0)

    def _orphaned(self, fut: asyncio.Future[Any], key: str, owner: str) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        token = int(fut.result()[0])
        if token:
            value = f"{owner}|{token}"
            task = asyncio.ensure_future(
                self._call(self._release, [key], [value, self._channel(key)])
            )
            task.add_done_callback(_consume)

    async def _take(
        self, kind: str, name: str, ttl: float, wait: float | None, owner: str
    ) -> RedisLease:
        validate_name(name)
        ttl = validate_ttl(ttl)
        wait = validate_wait(wait)
        key = f"{self._prefix}{kind}:{name}"
        counter = f"{self._prefix}token:{kind}:{name}"
        token, pttl = await self._try(key, counter, owner, ttl)
        if token or wait == 0:
            if not token:
                raise LockTimeout(f"lock {name!r} is held")
            return RedisLease(self, key, name, owner, token, ttl)
        deadline = None if wait is None else time.monotonic() + wait
        pubsub = self._client.pubsub()
        try:
            # Subscribe first, then retry: a release between the two is not missed.
            await self._shielded(self._call(pubsub.subscribe, self._channel(key)))
            while True:
                token, pttl = await self._try(key, counter, owner, ttl)
                if token:
                    return RedisLease(self, key, name, owner, token, ttl)
                pause = min(pttl or _MAX_RETRY, _MAX_RETRY)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LockTimeout(f"lock {name!r} not acquired within {wait}s")
                    pause = min(pause, left)
                await self._call(pubsub.get_message, ignore_subscribe_messages=True, timeout=pause)
        finally:
            # The pubsub connection is being dropped anyway: its close may fail quietly.
            with contextlib.suppress(Exception):
                await asyncio.shield(pubsub.aclose())

    async def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Lease:
        self._check_open()
        return await self._take("lock", name, ttl, wait, owner or self._owner)

    async def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> Leadership:
        self._check_open()
        lease = await self._take("election", name, ttl, wait, candidate)
        return self._won(RenewingLeadership(lease, candidate))

    async def leader(self, name: str) -> str | None:
        self._check_open()
        value = await self._call(self._client.get, f"{self._prefix}election:{validate_name(name)}")
        if value is None:
            return None
        return str(value).rpartition("|")[0]
