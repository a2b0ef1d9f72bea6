"""`memory://`: locks in this process, on the Rust lock manager or its pure twin.

Both surfaces wrap one *core* object with the same methods, `RustLockManager`
(`impl="rust"`, the default when the extension is built) or
`PythonLockManager` (`impl="python"`), so the two implementations are
compared through identical wrappers. Elections use a second core, so lock
names and election names never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from typing import Any

from microstd import _accel, _validate
from microstd._backends import Convert, ParsedURL, memory_options, shared_instance
from microstd.errors import LockLost
from microstd.sync._election import RenewingLeadership, RenewingSyncLeadership
from microstd.sync._pure import PythonLockManager, timeout
from microstd.sync.base import (
    DEFAULT_TTL,
    Leadership,
    Lease,
    Locks,
    SyncLeadership,
    SyncLease,
    SyncLocks,
    validate_name,
    validate_ttl,
    validate_wait,
)

__all__ = ["MemoryBackend", "MemoryLease", "MemoryLocks", "SyncMemoryLocks", "default_owner"]

if _accel.core is not None:
    # The Rust lease is a SyncLease in all but inheritance.
    SyncLease.register(_accel.core.RustLease)
    SyncLease.register(_accel.core.RustLockGuard)


def default_owner() -> str:
    """An owner id unique to this process and object: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Cores:
    """The two managers behind one memory:// instance: locks and elections."""

    __slots__ = ("elections", "impl", "locks")

    def __init__(self, impl: str | None = None) -> None:
        self.impl = _validate.impl_choice(impl)
        if self.impl == "rust":
            core = _accel.require_core()
            self.locks: Any = core.RustLockManager()
            self.elections: Any = core.RustLockManager()
        else:
            self.locks = PythonLockManager()
            self.elections = PythonLockManager()


#: The option memory locks take besides `impl`: the default owner id of leases.
_OPTIONS: dict[str, Convert | None] = {"owner": str}


def _cores(parsed: ParsedURL, options: dict[str, Any]) -> tuple[_Cores, dict[str, Any]]:
    opts = memory_options("sync", parsed, options, _OPTIONS)
    if opts.name:
        return shared_instance("sync", opts.impl, opts.name, lambda: _Cores(opts.impl)), opts.values
    return _Cores(opts.impl), opts.values


def _deliver(fut: asyncio.Future[Any], outcome: object) -> None:
    """Runs on the waiter's loop: resolve its future, or free a grant nobody awaits."""
    if fut.done():
        if not isinstance(outcome, BaseException):
            with contextlib.suppress(LockLost):
                outcome.release()  # type: ignore[attr-defined]
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


class _Delivery:
    """The callback the core calls with a waiter's lease (or exception).

    On the waiter's own loop thread (a release by another task) it resolves the
    future at once, as `asyncio.Lock` does; from any other thread it goes
    through `call_soon_threadsafe`.
    """

    __slots__ = ("_fut", "_loop", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        self._loop = loop
        self._fut = fut
        self._thread = threading.get_ident()

    def __call__(self, outcome: object) -> None:
        if threading.get_ident() == self._thread:
            _deliver(self._fut, outcome)
        else:
            self._loop.call_soon_threadsafe(_deliver, self._fut, outcome)


def _abandon(core: Any, name: str, waiter: int, fut: asyncio.Future[Any]) -> None:
    """A waiter gave up (timeout, cancellation): leave the queue, or pass on a grant."""
    if fut.done() and not fut.cancelled() and fut.exception() is None:
        # Granted in the same instant we gave up: hand it on.
        with contextlib.suppress(LockLost):
            fut.result().release()
        return
    fut.cancel()
    # False means the grant is in flight: `_deliver` sees the cancelled future and frees it.
    core.cancel(name, waiter)


def _claim(lease: Any) -> bool:
    """Take up a lease the core granted while this task was queued: its expiry
    restarts from now. False if it ran out before the task could run (a stalled
    loop): the lock may be someone else's by now, so the task queues again."""
    try:
        lease.refresh()
    except LockLost:
        return False
    return True


class MemoryLease(Lease):
    """The async face of a core lease."""

    __slots__ = ("_core",)

    def __init__(self, core_lease: Any) -> None:
        self._core = core_lease
        self.name = core_lease.name
        self.owner = core_lease.owner
        self.token = core_lease.token

    @property
    def ttl(self) -> float:
        return float(self._core.ttl)

    @property
    def expires_at(self) -> float:
        return float(self._core.expires_at)

    async def refresh(self, ttl: float | None = None) -> None:
        self._core.refresh(ttl)

    async def release(self) -> None:
        self._core.release()


def _fail(fut: asyncio.Future[Any], error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)


class MemoryLocks(Locks):
    """Async locks in this process. Thread and asyncio waiters share the same queues."""

    def __init__(self, cores: _Cores, owner: str | None = None) -> None:
        self._cores = cores
        self._owner = owner or default_owner()
        # What close() ends besides the leaderships: this handle's queued waiters.
        self._pending: set[asyncio.Future[Any]] = set()

    def __repr__(self) -> str:
        return f"MemoryLocks(impl={self._cores.impl!r})"

    async def close(self) -> None:
        """Fail this handle's queued waiters with `Closed` (its leaderships are resigned
        first, by the base); the cores stay (a shared `memory://NAME` outlives one user)."""
        error = self._mark_closed()
        pending, self._pending = self._pending, set()
        for fut in pending:
            fut.get_loop().call_soon_threadsafe(_fail, fut, error)

    async def _acquire(
        self, core: Any, name: str, ttl: float, wait: float | None, owner: str
    ) -> Any:
        self._check_open()
        wait = validate_wait(wait)
        got = core.try_acquire(name, owner, ttl)
        if got is not None:
            return got
        if wait == 0:
            raise timeout(name, wait)
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            self._check_open()  # closed while its grant lapsed: no new place in the queue
            lease, queued = await self._queue(core, name, owner, ttl, deadline, wait)
            if not queued or _claim(lease):
                return lease
            if deadline is not None and time.monotonic() >= deadline:
                raise timeout(name, wait)

    async def _queue(
        self,
        core: Any,
        name: str,
        owner: str,
        ttl: float,
        deadline: float | None,
        wait: float | None,
    ) -> tuple[Any, bool]:
        """Queue for `name`: `(lease, queued)` once granted (`queued`: it was granted
        later, by a release or an expiry), or `LockTimeout` once `deadline` passes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        got = core.acquire_async(name, owner, ttl, _Delivery(loop, fut))
        if not isinstance(got, int):
            return got, False
        self._pending.add(fut)
        try:
            if deadline is None:
                return await fut, True
            return await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic())), True
        except asyncio.TimeoutError:
            _abandon(core, name, got, fut)
            raise timeout(name, wait) from None
        except BaseException:
            _abandon(core, name, got, fut)
            raise
        finally:
            self._pending.discard(fut)

    async def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Lease:
        got = await self._acquire(self._cores.locks, name, ttl, wait, owner or self._owner)
        return MemoryLease(got)

    async def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> Leadership:
        got = await self._acquire(self._cores.elections, name, ttl, wait, candidate)
        return self._won(RenewingLeadership(MemoryLease(got), candidate))

    async def leader(self, name: str) -> str | None:
        self._check_open()
        held = self._cores.elections.holder(validate_name(name))
        return None if held is None else str(held[0])


class SyncMemoryLocks(SyncLocks):
    """Blocking locks in this process: threads wait in the core with the GIL released."""

    def __init__(self, cores: _Cores, owner: str | None = None) -> None:
        self._cores = cores
        self._locks = cores.locks
        self._owner = owner or default_owner()

    def __repr__(self) -> str:
        return f"SyncMemoryLocks(impl={self._cores.impl!r})"

    def close(self) -> None:
        """Nothing of its own to end (the base resigns its leaderships); the cores stay
        (a shared `memory://NAME` outlives one user). A thread already blocked in
        `acquire` keeps waiting."""

    def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> SyncLease:
        self._check_open()
        lease: SyncLease = self._locks.acquire(name, owner or self._owner, ttl, wait)
        return lease

    def lock(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Any:
        # The core's own guard: one call in, acquire and release in the core.
        self._check_open()
        return self._locks.lock(name, owner or self._owner, ttl, wait)

    def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> SyncLeadership:
        self._check_open()
        validate_ttl(ttl)
        lease: SyncLease = self._cores.elections.acquire(name, candidate, ttl, validate_wait(wait))
        return self._won(RenewingSyncLeadership(lease, candidate))

    def leader(self, name: str) -> str | None:
        self._check_open()
        held = self._cores.elections.holder(validate_name(name))
        return None if held is None else str(held[0])


class MemoryBackend:
    """The `memory://` entry: `memory://` is private, `memory://NAME` is shared."""

    @staticmethod
    def from_url(parsed: ParsedURL, **options: Any) -> MemoryLocks:
        cores, values = _cores(parsed, options)
        return MemoryLocks(cores, **values)

    @staticmethod
    def from_url_sync(parsed: ParsedURL, **options: Any) -> SyncMemoryLocks:
        cores, values = _cores(parsed, options)
        return SyncMemoryLocks(cores, **values)
