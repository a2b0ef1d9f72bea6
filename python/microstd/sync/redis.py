"""`redis://`: locks on one Redis server (or on the master its Sentinels name:
``redis+sentinel://h1:26379,h2:26379/SERVICE/DB``, microstd._engines.redis_sentinel).

A lock is the key `<prefix>lock:<name>` holding `<owner>|<token>`, set with
`SET NX PX`; its fencing token is the counter `<prefix>token:<name>` raised to
max(counter + 1, the server's clock in microseconds), so tokens keep
increasing per name, also across a restart that lost the counter (a Redis
without persistence). Release and
refresh are compare-and-delete / compare-and-extend Lua scripts, so only the
holder of that very lease can end or extend it. A release publishes on
`<prefix>released:<name>`; waiters subscribe there and also retry on a
bounded timer (the lock's remaining TTL, at most 0.5 s), so a crashed
holder's expiry is noticed without busy polling. Waiters are not queued
FIFO: the first retry after a release wins.

Elections are locks under `<prefix>election:<name>`, held by the candidate
and renewed in the background.

On Redis Cluster (``redis+cluster://n1:7000,n2:7000/``) the prefix gets a hash
tag (``{microstd:}``; one that holds a tag already is kept), so each script's
keys are in one slot: the locks of one prefix live on one shard. Waiters
subscribe on the master of that slot (classic pub/sub reaches every node).
Replication is asynchronous there as with Sentinel: a lock granted just
before its master died may be granted again by the promoted replica; the
fencing token is the defence (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import redis as engine
from microstd._engines.redis_cluster import hash_tag
from microstd._engines.redis_sentinel import aclose as close_client
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._election import RenewingLeadership
from microstd.sync._expiry import DEFAULT_TIMEOUT, give_up_at, timeout_option
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
#
# The token is max(counter + 1, the server's clock in microseconds): a Redis
# without persistence that restarts loses the counter, and a plain INCR would
# hand out 1, 2, ... again, tokens older holders already carry. Seeded from the
# clock, tokens keep increasing across such a restart as long as the server's
# clock does not step back by more than the restart took (one acquire costs
# more than a microsecond, so the counter never runs ahead of the clock). The
# value stays below 2^53 (until the year 2255): exact in Lua's doubles, and
# written back with %.0f, since tostring() would print 1.7e+15.
_ACQUIRE = """
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then return {0, pttl} end
local now = redis.call('TIME')
local token = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last and token <= last then token = last + 1 end
redis.call('SET', KEYS[2], string.format('%.0f', token))
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. string.format('%.0f', token), 'NX', 'PX', ARGV[2])
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


class RedisLease(Lease):
    """A Redis-held lock: compare-and-extend to refresh, compare-and-delete to release."""

    def __init__(
        self,
        locks: RedisLocks,
        key: str,
        name: str,
        owner: str,
        token: int,
        ttl: float,
        sent: tuple[float, float],
    ) -> None:
        self._locks = locks
        self._key = key
        self.name = name
        self.owner = owner
        self.token = token
        self._ttl = ttl
        # `sent`: (monotonic, wall) when the request that granted the lease was sent;
        # its expiry counts from there (see `_expiry`), never from the reply.
        self._sent_at = sent[0]
        self._expires_at = sent[1] + ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    @property
    def _value(self) -> str:
        return f"{self.owner}|{self.token}"

    def _lost(self, why: str = "") -> LockLost:
        return LockLost(f"lock {self.name!r} (token {self.token}) is no longer held{why}")

    async def refresh(self, ttl: float | None = None) -> None:
        """Extend the lease; bounded by the time left before it must count as lost
        (`LockLost` when that passes unanswered), else by the request timeout."""
        new = self._ttl if ttl is None else validate_ttl(ttl)
        sent, wall = time.monotonic(), time.time()
        left = give_up_at(self._sent_at, self._ttl) - sent
        # A lease already past that point may still be found ours (the compare proves
        # it): then the request is bounded by the ordinary request timeout only.
        bound = left if left > 0 else None
        call = self._locks._call(self._locks._refresh, [self._key], [self._value, _ms(new)])
        try:
            ok = await (call if bound is None else asyncio.wait_for(call, bound))
        except asyncio.TimeoutError:
            raise self._lost(": no reply to its refresh before its local expiry") from None
        if not ok:
            raise self._lost()
        self._ttl, self._sent_at, self._expires_at = new, sent, wall + new

    async def release(self) -> None:
        ok = await self._locks._call(
            self._locks._release,
            [self._key],
            [self._value, self._locks._channel(self._key)],
        )
        if not ok:
            raise self._lost()


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve a background request's outcome, so asyncio does not warn of it."""
    if not fut.cancelled():
        fut.exception()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLocks(Locks):
    """Locks and elections on Redis (redis-py's asyncio client).

    `timeout` (seconds, default 5) bounds each request: past it the operation
    fails with `ConnectionFailed` instead of hanging on a frozen server.
    """

    def __init__(
        self,
        url: str | engine.RedisEndpoint,
        *,
        prefix: str = "microstd:",
        owner: str | None = None,
        timeout: float | str = DEFAULT_TIMEOUT,
    ) -> None:
        """`url` is a ``redis://`` URL (or an endpoint, which brings its own timeouts;
        see `microstd._engines.redis`)."""
        if isinstance(url, engine.RedisEndpoint):
            self._endpoint = url
        else:
            seconds = timeout_option(timeout)
            self._endpoint, _ = engine.RedisEndpoint.from_url(
                url, {"timeout": seconds, "connect_timeout": seconds}, decode_responses=True
            )
        # On a cluster every key carries the prefix's hash tag: a lock and its
        # token counter (the acquire script's two keys) are in one slot, as are
        # all the locks of this prefix (they live on one shard).
        self._prefix = hash_tag(prefix) if self._endpoint.cluster is not None else prefix
        self._owner = owner or default_owner()
        self._timeout = self._endpoint.timeouts.request
        # The engine's timeouts end a request this client gave up on (see `_bounded`).
        self._client: Any = self._endpoint.client()
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._refresh = self._client.register_script(_REFRESH)

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisLocks:
        # The engine reads the connection options (timeouts); prefix= and owner=
        # are the locks'; any other query option is redis-py's.
        endpoint, mine = engine.RedisEndpoint.from_url(
            parsed, options, area=("prefix", "owner"), decode_responses=True
        )
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"RedisLocks({self._endpoint.redacted!r})"

    async def connect(self) -> None:
        await self._call(self._client.ping)

    async def close(self) -> None:
        await close_client(self._client)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One request, bounded by the timeout; every failure is `ConnectionFailed`."""
        return await self._bounded(self._timeout, fn(*args, **kwargs))

    async def _bounded(
        self,
        bound: float,
        request: Any,
        on_abandon: Callable[[asyncio.Future[Any]], None] = _consume,
    ) -> Any:
        """`await request` for at most `bound` seconds, then `ConnectionFailed`.

        A request given up on (timed out, or its caller cancelled) is never
        awaited nor cancelled: redis-py can swallow a cancellation (while it opens
        a connection), and waiting for it would hang on a frozen server. It runs
        to its end in the background (bounded by the client's socket timeout),
        and `on_abandon` gets its outcome.
        """
        task = asyncio.ensure_future(request)
        try:
            done, _ = await asyncio.wait({task}, timeout=bound)
        except asyncio.CancelledError:
            task.add_done_callback(on_abandon)
            raise
        if not done:
            task.add_done_callback(on_abandon)
            raise ConnectionFailed(f"redis: no reply within {bound}s")
        with engine.errors(self._endpoint, "locks"):
            return task.result()

    def _channel(self, key: str) -> str:
        return f"{self._prefix}released:{key}"

    async def _try(self, key: str, counter: str, owner: str, ttl: float) -> tuple[int, float]:
        """One attempt: `(token, 0)` if taken, else `(0, seconds the holder has left)`."""
        token, pttl = await self._bounded(
            self._timeout,
            self._acquire(keys=[key, counter], args=[owner, _ms(ttl)]),
            # The script may still take the lock after we gave up: give it back.
            lambda f: self._orphaned(f, key, owner),
        )
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
        sent = (time.monotonic(), time.time())
        token, pttl = await self._try(key, counter, owner, ttl)
        if token or wait == 0:
            if not token:
                raise LockTimeout(f"lock {name!r} is held")
            return RedisLease(self, key, name, owner, token, ttl, sent)
        deadline = None if wait is None else time.monotonic() + wait
        pubsub = self._client.pubsub()
        try:
            # Subscribe first, then retry: a release between the two is not missed.
            await self._call(pubsub.subscribe, self._channel(key))
            while True:
                sent = (time.monotonic(), time.time())
                token, pttl = await self._try(key, counter, owner, ttl)
                if token:
                    return RedisLease(self, key, name, owner, token, ttl, sent)
                pause = min(pttl or _MAX_RETRY, _MAX_RETRY)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LockTimeout(f"lock {name!r} not acquired within {wait}s")
                    pause = min(pause, left)
                await self._next_release(pubsub, pause)
        finally:
            # The pubsub connection is being dropped anyway: its close may fail quietly.
            with contextlib.suppress(Exception):
                await self._call(pubsub.aclose)

    async def _next_release(self, pubsub: Any, pause: float) -> None:
        """Wait up to `pause` for a release message on the waiter's own connection.

        Not `_bounded`: this read must be cancelled, not left running, when the
        waiter gives up, as the connection is closed next (a read cancels at once).
        """
        try:
            with engine.errors(self._endpoint, "locks wait"):
                await asyncio.wait_for(
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=pause),
                    pause + self._timeout,
                )
        except ConnectionFailed as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError):
                bound = pause + self._timeout
                raise ConnectionFailed(f"redis: no reply within {bound}s") from None
            raise

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
