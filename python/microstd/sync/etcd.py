"""`etcd://`: locks and elections on etcd v3, with etcd's own semantics.

Both follow etcd's `concurrency` package: a contender grants a lease, puts
`<prefix>/<lease-id>` under that lease, and holds the lock (or leads) once
its key has the lowest create revision under the prefix. Until then it
watches the deletion of the key just before its own (no herd: one watcher per
key). The fencing token is the key's create revision, which only grows (as
long as etcd keeps its data directory: see docs/guarantees.md).

A contender keeps its lease alive while it waits, however long that is, and
right before `acquire` / `elect` returns it renews the lease once more and
checks its key is still there with its own create revision: a contender
whose lease ran out while it waited (its process stalled, the server was
unreachable) lost its place, and queues again with the wait it has left. No
acquire or elect returns a lease that is not held.

etcd leases are whole seconds with a server-side floor (about 2 s on a
default server): `Lease.ttl` reports what the server granted.

On a cluster (``etcd://h1,h2,h3``) every request the locks make is safe to
send again, so one whose reply was lost, or that a silent member (frozen, cut
off) holds past the client's `attempt_timeout`, is sent to the next member
within the same call: reads, keepalives and revokes; a lease grant, whose ID
the client picks, so a second attempt grants the same lease (etcd refuses it
as existing, and the first attempt's lease is used) and an abandoned one that
arrives late is refused, never leaked; the contender's put, a transaction that
creates its key only if absent and reads it back in both branches, so the
token is the key's create revision whichever attempt created it; the move to
a new lease (a put that keeps the create revision, compared on it); and the
release's delete, compared on the create revision: when a second attempt
finds the key gone, the lease is looked up, and a key gone while its lease
lives was deleted by the first attempt (nothing else deletes it), so the
release succeeded; the lease gone too reads as `LockLost`. A release that
still fails revokes its lease, which deletes the key if it is still ours, and
raises `ConnectionFailed`. A refresh never outlives its safe window: its
attempts, retries included, are bounded by the local expiry counted from the
first attempt's send.

Talks to etcd's JSON gateway through aiohttp; see `_etcdapi` for why.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines.etcd import EtcdEndpoint, txn_read
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._election import RenewingLeadership
from microstd.sync._etcdapi import (
    EtcdAPI,
    b64,
    field,
    int_field,
    kvs_of,
    prefix_end,
    unb64,
)
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

__all__ = ["EtcdLease", "EtcdLocks"]


def _seconds(ttl: float) -> int:
    return max(1, math.ceil(ttl))


async def _while_alive(
    api: EtcdAPI, lease_id: str, ttl: float, turn: Any, left: float | None
) -> None:
    """Await `turn` (a contender's wait) while keeping its lease alive.

    `_LostPlace` if the lease is gone (or may be), `asyncio.TimeoutError` after
    `left` seconds.
    """
    waiting = asyncio.ensure_future(turn)
    keeper = asyncio.ensure_future(_keep_alive_loop(api, lease_id, ttl))
    try:
        done, _ = await asyncio.wait(
            {waiting, keeper}, timeout=left, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (waiting, keeper):
            task.cancel()
        await asyncio.gather(waiting, keeper, return_exceptions=True)
    if waiting in done:
        waiting.result()
        return
    if keeper in done:
        keeper.result()
        raise _LostPlace
    raise asyncio.TimeoutError


async def _keep_alive_loop(api: EtcdAPI, lease_id: str, ttl: float) -> None:
    """Renew a waiting contender's lease every third of its ttl; return once it is
    gone, or may be: etcd says so, or no renewal got through before it would run out
    (the contender then queues again, and learns there if the server is unreachable)."""
    interval = max(ttl / 3.0, 0.1)
    expiry = time.monotonic() + ttl
    while True:
        await asyncio.sleep(interval)
        left = expiry - time.monotonic()
        if left <= 0:
            return
        try:
            # Bounded by the lease's time left: a later answer could not save it.
            alive = await _keep_alive(api, lease_id, left)
        except ConnectionFailed:
            continue
        if alive is None:
            return
        expiry = alive.sent + alive.ttl


class EtcdLease(Lease):
    """A key held under an etcd lease; the token is the key's create revision."""

    def __init__(
        self,
        api: EtcdAPI,
        key: str,
        name: str,
        owner: str,
        token: int,
        lease_id: str,
        alive: _Alive,
    ) -> None:
        self._api = api
        self._key = key
        self._lease_id = lease_id
        self.name = name
        self.owner = owner
        self.token = token
        self._ttl = alive.ttl
        self._expires_at = alive.wall + alive.ttl
        # When the request that last renewed the lease was sent (monotonic): the
        # shared election code counts this holder's local expiry from it.
        self._sent_at = alive.sent
        # A move to a new lease whose outcome is unknown: the key may be gone.
        self._moving = False

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def _lost(self) -> LockLost:
        return LockLost(f"lock {self.name!r} (token {self.token}) is no longer held")

    def _still_mine(self) -> dict[str, Any]:
        return {
            "key": b64(self._key),
            "target": "CREATE",
            "result": "EQUAL",
            "create_revision": str(self.token),
        }

    async def refresh(self, ttl: float | None = None) -> None:
        if ttl is not None and _seconds(validate_ttl(ttl)) != _seconds(self._ttl):
            await self._move_to_new_lease(ttl)
            return
        # Bounded by the time left before the lease must count as lost (see `_expiry`);
        # one already past it may still be found alive, within the request timeout.
        left = give_up_at(self._sent_at, self._ttl) - time.monotonic()
        renewal = _renew(self._api, self._key, self.token, self._lease_id)
        try:
            alive = await (renewal if left <= 0 else asyncio.wait_for(renewal, left))
        except asyncio.TimeoutError:
            raise LockLost(
                f"lock {self.name!r} (token {self.token}): no reply to its refresh "
                "before its local expiry"
            ) from None
        if alive is None:
            raise self._lost()
        self._ttl, self._expires_at, self._sent_at = alive.ttl, alive.wall + alive.ttl, alive.sent

    async def _move_to_new_lease(self, ttl: float) -> None:
        sent, wall = time.monotonic(), time.time()
        new_id, granted = await self._api.grant(_seconds(ttl))
        new_ttl = float(granted)
        # Once the move is sent the key may be on the new lease, which nobody renews
        # if the reply is lost: from here the holder believes no more than it gives.
        if give_up_at(sent, new_ttl) < give_up_at(self._sent_at, self._ttl):
            self._ttl, self._sent_at = new_ttl, sent
            self._expires_at = min(self._expires_at, wall + new_ttl)
        try:
            # A put keeps the key's create revision, so the token does not change.
            moved = await self._api.call(
                "kv/txn",
                {
                    "compare": [self._still_mine()],
                    "success": [
                        {
                            "request_put": {
                                "key": b64(self._key),
                                "value": b64(self.owner),
                                "lease": new_id,
                            }
                        }
                    ],
                },
                # A second put keeps the create revision the compare checks: same result.
                idempotent=True,
            )
        except BaseException:
            self._moving = True
            # Ambiguous: the key may have moved. Revoking the new lease deletes it
            # then, and the next refresh (which checks the key is on this holder's
            # lease) reports the lock lost instead of renewing a lease holding nothing.
            with contextlib.suppress(Exception):
                await self._api.call("lease/revoke", {"ID": new_id}, idempotent=True)
            raise
        old_id = self._lease_id
        if not moved.get("succeeded"):
            await self._api.call("lease/revoke", {"ID": new_id}, idempotent=True)
            raise self._lost()
        self._lease_id, self._ttl = new_id, new_ttl
        self._expires_at, self._sent_at = wall + new_ttl, sent
        # The key is on the new lease: the old one holds nothing and runs out anyway.
        with contextlib.suppress(ConnectionFailed):
            await self._api.call("lease/revoke", {"ID": old_id}, idempotent=True)

    async def release(self) -> None:
        try:
            # Safe to send again (to another member, after an attempt abandoned on a
            # frozen one): a second delete finds the key gone, and a key gone while
            # its lease lives was deleted by this release (`_deleted_by_us`).
            done = await self._api.call(
                "kv/txn",
                {
                    "compare": [self._still_mine()],
                    "success": [{"request_delete_range": {"key": b64(self._key)}}],
                },
                idempotent=True,
            )
            released = bool(done.get("succeeded")) or await self._deleted_by_us()
        except ConnectionFailed:
            # Ambiguous: revoking the lease deletes the key anyway if it is still ours.
            with contextlib.suppress(Exception):
                await self._api.call("lease/revoke", {"ID": self._lease_id}, idempotent=True)
            raise
        with contextlib.suppress(Exception):
            await self._api.call("lease/revoke", {"ID": self._lease_id}, idempotent=True)
        if not released:
            raise self._lost()

    async def _deleted_by_us(self) -> bool:
        """The key is gone: True if this release's own earlier attempt deleted it.

        Only two things remove a contender's key (named after its lease): its
        own delete, and its lease's end. So a key gone while its lease lives was
        deleted by an attempt of this release whose reply was lost. A lease gone
        too means the lock ran out (`LockLost`), or just possibly ran out after
        that attempt deleted the key: a release that close to its expiry is
        reported lost, the safe side. After an ambiguous move to a new lease
        (`refresh(ttl=...)`) the key may have gone with the new lease: lost."""
        if self._moving:
            return False
        got = await self._api.call("lease/timetolive", {"ID": self._lease_id}, idempotent=True)
        return int_field(got, "TTL", default=-1) >= 0


class _Alive:
    """A lease renewal that etcd confirmed: the TTL it reset the lease to, and when
    (monotonic and wall clock) the request was sent, so expiry counts from there."""

    __slots__ = ("sent", "ttl", "wall")

    def __init__(self, sent: float, wall: float, ttl: float) -> None:
        self.sent = sent
        self.wall = wall
        self.ttl = ttl


async def _keep_alive(api: EtcdAPI, lease_id: str, timeout: float | None = None) -> _Alive | None:
    """Renew the lease once: None if etcd no longer has it."""
    sent, wall = time.monotonic(), time.time()
    got = await api.call("lease/keepalive", {"ID": lease_id}, timeout=timeout, idempotent=True)
    ttl = int_field(got, "result", "TTL", default=0)
    return _Alive(sent, wall, float(ttl)) if ttl > 0 else None


async def _renew(api: EtcdAPI, key: str, token: int, lease_id: str) -> _Alive | None:
    """Renew the lease, then check the key is still this holding's own: None if not.

    Renewed first: once etcd confirms the lease, the key cannot expire before the
    renewal's ttl, so a key found afterwards with our create revision is held until then.
    """
    alive = await _keep_alive(api, lease_id)
    if alive is None:
        return None
    got = await api.call("kv/range", {"key": b64(key)}, idempotent=True)
    kvs = kvs_of(got)
    if not kvs or int_field(kvs[0], "create_revision", default=-1) != token:
        return None
    # A key moved to another lease (a `refresh(ttl=...)` whose reply was lost) is
    # not kept alive by this renewal: it is not held on its strength.
    if int_field(kvs[0], "lease", default=0) != int(lease_id):
        return None
    return alive


class _LostPlace(Exception):
    """A contender's lease ran out while it waited: its key (its place) is gone."""


class EtcdLocks(Locks):
    """Locks and elections on etcd v3 (leases, transactions, watches).

    `timeout` (seconds, default 5) bounds each request to etcd: past it the
    operation fails with `ConnectionFailed` instead of hanging on a frozen server.
    """

    def __init__(
        self,
        base: str | EtcdEndpoint,
        *,
        prefix: str = "microstd/",
        owner: str | None = None,
        timeout: float | str = DEFAULT_TIMEOUT,
    ) -> None:
        """`base` is ``http(s)://host:port``, ``etcd://host:port`` or a cluster's
        members, ``etcd://h1,h2,h3`` (or an endpoint, which brings its own timeouts
        and credentials; see `microstd._engines.etcd`)."""
        self._prefix = prefix
        self._owner = owner or default_owner()
        self._api = EtcdAPI(base, timeout=timeout_option(timeout))

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> EtcdLocks:
        # The engine reads the connection options (timeouts, tls=, credentials).
        endpoint, mine = EtcdEndpoint.from_url(parsed, options)
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"EtcdLocks({self._api.endpoint.redacted!r})"

    async def connect(self) -> None:
        await self._api.call("maintenance/status", {}, idempotent=True)

    async def close(self) -> None:
        await self._api.close()

    async def _contend(
        self, kind: str, name: str, ttl: float, wait: float | None, value: str
    ) -> EtcdLease:
        self._check_open()
        validate_name(name)
        ttl = validate_ttl(ttl)
        wait = validate_wait(wait)
        prefix = f"{self._prefix}{kind}/{name}/"
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                return await self._take_place(prefix, name, ttl, wait, deadline, value)
            except _LostPlace:
                # Queue again, at the back, with the wait that is left.
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"lock {name!r} not acquired within {wait}s") from None

    async def _take_place(
        self,
        prefix: str,
        name: str,
        ttl: float,
        wait: float | None,
        deadline: float | None,
        value: str,
    ) -> EtcdLease:
        """Queue once: the lease when this contender's turn comes and it still holds
        its place, `_LostPlace` if its lease ran out first, `LockTimeout` at `deadline`."""
        # The lease's ID is chosen by the client: a grant sent again is the same grant.
        lease_id, granted = await self._api.grant(_seconds(ttl))
        granted_ttl = float(granted)
        key = f"{prefix}{int(lease_id):x}"
        try:
            token = await self._place(key, value, lease_id)
            # wait=0 looks once and needs no bound; a wait that is running out still looks.
            left = None if deadline is None or wait == 0 else deadline - time.monotonic()
            turn = self._wait_turn(prefix, token, once=wait == 0)
            if left is not None:
                left = max(left, 0.0)
            try:
                await _while_alive(self._api, lease_id, granted_ttl, turn, left)
            except asyncio.TimeoutError:
                raise LockTimeout(f"lock {name!r} not acquired within {wait}s") from None
            # Our turn came: renew once more and check the key is still ours, so the
            # lease returned is held and counts from now.
            alive = await _renew(self._api, key, token, lease_id)
            if alive is None:
                raise _LostPlace
        except BaseException:
            # Give the place up: revoking the lease deletes the key.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._api.call("lease/revoke", {"ID": lease_id}, idempotent=True)
                )
            raise
        return EtcdLease(self._api, key, name, value, token, lease_id, alive)

    async def _place(self, key: str, value: str, lease_id: str) -> int:
        """Put the contender's key (named after its lease, so nobody else's) under its
        lease unless it is there already; its create revision, the token.

        Idempotent: an attempt whose reply was lost and that created the key leaves
        it for the next attempt to find, with the same create revision."""
        read = {"request_range": {"key": b64(key)}}
        put = {"request_put": {"key": b64(key), "value": b64(value), "lease": lease_id}}
        got = await self._api.call(
            "kv/txn",
            {
                "compare": [
                    {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [put, read],
                "failure": [read],
            },
            idempotent=True,
        )
        kv = txn_read(got)
        if kv is None:
            raise ConnectionFailed("etcd answered a contender's put without its key")
        return int_field(kv, "create_revision")

    async def _wait_turn(self, prefix: str, token: int, once: bool = False) -> None:
        """Return once no key under `prefix` was created before `token`."""
        while True:
            got = await self._api.call(
                "kv/range",
                {
                    "key": b64(prefix),
                    "range_end": prefix_end(prefix),
                    "max_create_revision": str(token - 1),
                    "sort_order": "DESCEND",
                    "sort_target": "CREATE",
                    "limit": 1,
                    "keys_only": True,
                },
                idempotent=True,
            )
            kvs = kvs_of(got)
            if not kvs:
                return
            if once:
                raise asyncio.TimeoutError
            # Watch from just after this read, so a deletion in between is seen.
            start = int_field(got, "header", "revision") + 1
            before = field(kvs[0], "key")  # still base64, as the watch wants it
            if not isinstance(before, str):
                raise ConnectionFailed("etcd answered a non-text key")
            async for result in self._api.watch({"key": before, "start_revision": str(start)}):
                events = result.get("events")
                if isinstance(events, list) and any(
                    isinstance(ev, dict) and ev.get("type") == "DELETE" for ev in events
                ):
                    break

    async def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Lease:
        return await self._contend("lock", name, ttl, wait, owner or self._owner)

    async def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> Leadership:
        lease = await self._contend("election", name, ttl, wait, candidate)
        return self._won(RenewingLeadership(lease, candidate))

    async def leader(self, name: str) -> str | None:
        self._check_open()
        prefix = f"{self._prefix}election/{validate_name(name)}/"
        got = await self._api.call(
            "kv/range",
            {
                "key": b64(prefix),
                "range_end": prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
                "limit": 1,
            },
            idempotent=True,
        )
        kvs = kvs_of(got)
        return unb64(kvs[0].get("value", "")) if kvs else None
