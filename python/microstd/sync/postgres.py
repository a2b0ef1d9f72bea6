"""`postgresql://`: locks and leader election on a lease table (asyncpg).

    locks = microstd.sync.open("postgresql://app@db:5432/app", table="app_locks")

One row per lock name in ``<table>`` (default ``microstd_locks``, created on
first use): its holder, the holder's fencing token and when the lease ends
(``expires_at``, on the server's clock). The row stays when the lock is
released, so its token keeps counting: each grant sets ``token = token + 1``
in the same statement that checks the lock is free, and PostgreSQL keeps the
row across restarts, so tokens are strictly increasing per name for the life
of the table. These are leases, not session advisory locks: a lock does not
die with a connection, and it carries a token.

Release and refresh compare the holder *and* the token, and check that the
lease has not run out, in one UPDATE; a release NOTIFYs ``<table>`` so the
waiters of this and every other process retry at once (they also retry on a
timer bounded by the holder's remaining time, at most 0.5 s, so a crashed
holder's expiry is noticed). Waiters are not queued FIFO: the first retry
after a release wins.

The safety rules are the other backends' (`microstd.sync._expiry`): a lease's
local expiry counts from when its grant or last extension was *sent*; a
refresh not answered before that expiry minus the margin raises `LockLost`;
a leader's `lost` fires at that point unless a renewal was confirmed. An
acquire whose caller gave up (cancelled, or timed out) while the statement was
in flight gives the lock back if the statement turns out to have taken it.

Connection, pool, timeouts and errors are `microstd._engines.postgres`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import postgres as engine
from microstd.errors import Closed, LockLost, LockTimeout
from microstd.sync._election import RenewingLeadership
from microstd.sync._expiry import give_up_at
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

__all__ = ["PostgresLease", "PostgresLocks"]

DEFAULT_TABLE = "microstd_locks"
SCHEMA_VERSION = 1
_MAX_RETRY = 0.5
_OPTIONS = ("table", "owner")
_NOW = "clock_timestamp()"


def _ddl(t: str) -> str:
    return f"""
CREATE TABLE {t} (
    kind text NOT NULL,
    name text NOT NULL,
    owner text,
    token bigint NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (kind, name)
);
"""


class _SQL:
    def __init__(self, t: str) -> None:
        # $1 kind, $2 name, $3 owner, $4 ttl seconds. Returns (token or NULL, seconds
        # the current holder has left when the lock is held).
        self.acquire = (
            f"WITH a AS (INSERT INTO {t} AS l (kind, name, owner, token, expires_at)"
            f" VALUES ($1, $2, $3, 1, {_NOW} + make_interval(secs => $4))"
            " ON CONFLICT (kind, name) DO UPDATE SET owner = excluded.owner,"
            " token = l.token + 1, expires_at = excluded.expires_at"
            f" WHERE l.owner IS NULL OR l.expires_at <= {_NOW}"
            " RETURNING l.token)"
            " SELECT (SELECT token FROM a),"
            f" (SELECT date_part('epoch', expires_at - {_NOW}) FROM {t}"
            "  WHERE kind = $1 AND name = $2)"
        )
        held = f"kind = $1 AND name = $2 AND owner = $3 AND token = $4 AND expires_at > {_NOW}"
        self.release = (
            f"WITH r AS (UPDATE {t} SET owner = NULL, expires_at = NULL WHERE {held}"
            " RETURNING kind, name)"
            f" SELECT pg_notify('{t}', r.kind || ':' || r.name) FROM r"
        )
        self.refresh = (
            f"UPDATE {t} SET expires_at = {_NOW} + make_interval(secs => $5)"
            f" WHERE {held} RETURNING 1"
        )
        self.leader = (
            f"SELECT owner FROM {t} WHERE kind = $1 AND name = $2 AND owner IS NOT NULL"
            f" AND expires_at > {_NOW}"
        )


class PostgresLease(Lease):
    """A lease row: compare-and-extend to refresh, compare-and-clear to release."""

    def __init__(
        self,
        locks: PostgresLocks,
        kind: str,
        name: str,
        owner: str,
        token: int,
        ttl: float,
        sent: tuple[float, float],
    ) -> None:
        self._locks = locks
        self._kind = kind
        self.name = name
        self.owner = owner
        self.token = token
        self._ttl = ttl
        # (monotonic, wall) when the granting request was sent: expiry counts from there.
        self._sent_at = sent[0]
        self._expires_at = sent[1] + ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def _lost(self, why: str = "") -> LockLost:
        return LockLost(f"lock {self.name!r} (token {self.token}) is no longer held{why}")

    async def refresh(self, ttl: float | None = None) -> None:
        """Extend the lease; `LockLost` if it is no longer held, or if no answer
        came before the time it must count as lost."""
        new = self._ttl if ttl is None else validate_ttl(ttl)
        sent, wall = time.monotonic(), time.time()
        left = give_up_at(self._sent_at, self._ttl) - sent
        call = self._locks._db.fetchval(
            "lock refresh",
            self._locks._sql.refresh,
            self._kind,
            self.name,
            self.owner,
            self.token,
            new,
        )
        try:
            ok = await (call if left <= 0 else asyncio.wait_for(call, left))
        except asyncio.TimeoutError:
            raise self._lost(": no reply to its refresh before its local expiry") from None
        if not ok:
            raise self._lost()
        self._ttl, self._sent_at, self._expires_at = new, sent, wall + new

    async def release(self) -> None:
        row = await self._locks._db.fetchrow(
            "lock release",
            self._locks._sql.release,
            self._kind,
            self.name,
            self.owner,
            self.token,
        )
        if row is None:
            raise self._lost()


class PostgresLocks(Locks):
    """Locks and elections on a PostgreSQL lease table (see the module docstring)."""

    def __init__(
        self,
        url: str | engine.PostgresEndpoint,
        *,
        table: str = DEFAULT_TABLE,
        owner: str | None = None,
        **connection: Any,
    ) -> None:
        if isinstance(url, engine.PostgresEndpoint):
            if connection:
                raise TypeError(f"unknown postgres sync options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.PostgresEndpoint.from_url(url, connection)
            if rest:
                raise TypeError(f"unknown postgres sync options: {sorted(rest)}")
        self._table = engine.identifier(table)
        self._sql = _SQL(self._table)
        self._owner = owner or default_owner()
        self._conn: engine.PostgresConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> PostgresLocks:
        """`postgresql://[user[:password]@]host[:port]/db`; `table` and `owner` may be
        in the query."""
        endpoint, mine = engine.PostgresEndpoint.from_url(parsed, options, area=_OPTIONS)
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"PostgresLocks({self._endpoint.redacted!r}, table={self._table!r})"

    @property
    def _db(self) -> engine.PostgresConnection:
        if self._conn is None:
            raise Closed("locks are closed")
        return self._conn

    async def connect(self) -> None:
        self._check_open()
        if self._conn is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None:
                return
            conn = await engine.acquire(self._endpoint)
            try:
                await conn.schema(f"sync:{self._table}", SCHEMA_VERSION, _ddl(self._table))
                await conn.ping("sync connect")
                self._unlisten = await conn.listener().listen(
                    self._table, self._released, resync=self._wake_all
                )
            except BaseException:
                await engine.release(conn)
                raise
            self._conn = conn

    async def close(self) -> None:
        unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            with contextlib.suppress(Exception):
                await unlisten()
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)
        self._wake_all()

    # -- waiting -------------------------------------------------------------------

    def _released(self, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _wake_all(self) -> None:
        # Back from a lost listening connection: releases may have been missed.
        for events in self._waiters.values():
            for event in events:
                event.set()

    def waiting(self, kind: str, name: str) -> int:
        """How many acquires of this handle wait for `name` (`kind` "lock" or "election")."""
        return len(self._waiters.get(f"{kind}:{name}", ()))

    # -- taking a lease ------------------------------------------------------------

    async def _attempt(self, kind: str, name: str, owner: str, ttl: float) -> tuple[int, float]:
        """One try: `(token, 0)` if granted, else `(0, seconds the holder has left)`.

        A try its caller gives up on while the statement is in flight runs on; if
        it turns out to have taken the lock, the lock is given back."""
        task = asyncio.ensure_future(
            self._db.fetchrow("lock acquire", self._sql.acquire, kind, name, owner, ttl)
        )
        try:
            row = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda f: self._orphaned(f, kind, name, owner))
            raise
        token, left = row[0], row[1]
        if token is not None:
            return int(token), 0.0
        return 0, max(0.0, float(left or 0.0))

    def _orphaned(self, fut: asyncio.Future[Any], kind: str, name: str, owner: str) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        token = fut.result()[0]
        if token is None or self._conn is None:
            return
        give_back = asyncio.ensure_future(
            self._db.fetchrow("lock release", self._sql.release, kind, name, owner, int(token))
        )
        give_back.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _take(
        self, kind: str, name: str, ttl: float, wait: float | None, owner: str
    ) -> PostgresLease:
        validate_name(name)
        ttl = validate_ttl(ttl)
        wait = validate_wait(wait)
        await self.connect()
        key = f"{kind}:{name}"
        event = asyncio.Event()
        # Registered before the first try: a release between a try and the wait
        # that follows it is not missed.
        self._waiters.setdefault(key, set()).add(event)
        deadline = None if wait is None else time.monotonic() + wait
        try:
            while True:
                event.clear()
                sent = (time.monotonic(), time.time())
                token, left = await self._attempt(kind, name, owner, ttl)
                if token:
                    return PostgresLease(self, kind, name, owner, token, ttl, sent)
                if wait == 0:
                    raise LockTimeout(f"lock {name!r} is held")
                pause = min(left or _MAX_RETRY, _MAX_RETRY)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise LockTimeout(f"lock {name!r} not acquired within {wait}s")
                    pause = min(pause, remaining)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), max(pause, 0.001))
        finally:
            events = self._waiters.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[key]

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
        name = validate_name(name)
        await self.connect()
        value = await self._db.fetchval(
            "lock leader", self._sql.leader, "election", name, read=True
        )
        return None if value is None else str(value)
