"""`PythonLockManager`: the pure-Python twin of the Rust lock manager.

The same algorithm as `rust/src/sync/manager.rs`, written well in Python: a
dict of per-name entries (holder, FIFO deque of waiters), one token counter,
a reaper thread that sleeps on a `threading.Condition` until the earliest
lease deadline among contended names, and hand-off straight to the first
waiter. Thread waiters block on a per-waiter lock (as `threading.Condition`
does internally); asyncio waiters get a callback. It is the fallback when the
extension is missing and the baseline of the benchmarks.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType

from microstd import _validate
from microstd.errors import Closed, LockLost, LockTimeout
from microstd.sync.base import SyncLease

__all__ = ["PythonLease", "PythonLockGuard", "PythonLockManager"]

_SIGNAL_SLICE = 0.1
Notify = Callable[[object], None]


def _check(name: object, ttl: object) -> tuple[str, float]:
    """The name and ttl, checked by the shared rules (as the Rust core checks them)."""
    return _validate.key(name, "lock names"), _validate.ttl(ttl)


def timeout(name: str, wait: float | None) -> LockTimeout:
    """The `LockTimeout` for a wait that ran out; the Rust core words it the same."""
    if not wait:
        return LockTimeout(f"lock {name!r} is held")
    return LockTimeout(f"lock {name!r} not acquired within {wait!r}s")


class _Waiter:
    __slots__ = ("id", "notify", "owner", "ttl")

    def __init__(self, id: int, owner: str, ttl: float, notify: Notify) -> None:
        self.id = id
        self.owner = owner
        self.ttl = ttl
        self.notify = notify


class _Holder:
    __slots__ = ("deadline", "owner", "token")

    def __init__(self, owner: str, token: int, deadline: float) -> None:
        self.owner = owner
        self.token = token
        self.deadline = deadline


class _Entry:
    __slots__ = ("holder", "waiters")

    def __init__(self) -> None:
        self.holder: _Holder | None = None
        self.waiters: deque[_Waiter] = deque()


# A grant travels as (token, monotonic deadline, wall-clock expires_at).
Grant = tuple[int, float, float]
Fired = list[tuple[Notify, object]]


def _fire(fired: Fired) -> None:
    for notify, outcome in fired:
        notify(outcome)


class _Table:
    """The state the reaper shares: everything but the public facade."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.wake = threading.Condition(self.mutex)
        self.entries: dict[str, _Entry] = {}
        self.contended: set[str] = set()
        self.last_token = 0
        self.last_waiter = 0
        self.closed = False
        # The reaper starts with the first contended name (as in the Rust core).
        self.reaper_started = False

    def start_reaper(self) -> None:
        if not self.reaper_started:
            self.reaper_started = True
            threading.Thread(target=self.reap, name="microstd-sync-reaper", daemon=True).start()

    def hand_over(self, name: str, now: float, fired: Fired) -> None:
        entry = self.entries.get(name)
        if entry is None or entry.holder is not None:
            return
        if entry.waiters:
            w = entry.waiters.popleft()
            self.last_token += 1
            token = self.last_token
            entry.holder = _Holder(w.owner, token, now + w.ttl)
            fired.append((w.notify, (token, now + w.ttl, time.time() + w.ttl)))
        if not entry.waiters:
            self.contended.discard(name)
            if entry.holder is None:
                del self.entries[name]

    def expire(self, name: str, now: float, fired: Fired) -> None:
        entry = self.entries.get(name)
        if entry is not None and entry.holder is not None and entry.holder.deadline <= now:
            entry.holder = None
            self.hand_over(name, now, fired)

    def take_if_free(self, name: str, owner: str, ttl: float, now: float) -> Grant | None:
        entry = self.entries.get(name)
        if entry is None:
            entry = self.entries[name] = _Entry()
        elif entry.holder is not None or entry.waiters:
            return None
        self.last_token += 1
        token = self.last_token
        entry.holder = _Holder(owner, token, now + ttl)
        return (token, now + ttl, time.time() + ttl)

    def reap(self) -> None:
        with self.mutex:
            while not self.closed:
                now = time.monotonic()
                fired: Fired = []
                nearest: float | None = None
                for name in list(self.contended):
                    self.expire(name, now, fired)
                    entry = self.entries.get(name)
                    if entry is not None and entry.holder is not None:
                        d = entry.holder.deadline
                        nearest = d if nearest is None else min(nearest, d)
                if fired:
                    self.mutex.release()
                    try:
                        _fire(fired)
                    finally:
                        self.mutex.acquire()
                    continue
                self.wake.wait(None if nearest is None else max(0.0, nearest - now))


class _Slot:
    """Where a blocked thread's outcome lands: a lock held until the outcome arrives."""

    __slots__ = ("gate", "outcome")

    def __init__(self) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.outcome: object = None

    def __call__(self, outcome: object) -> None:
        self.outcome = outcome
        self.gate.release()


class PythonLockManager:
    """Named locks with leases, fencing tokens and FIFO waiters, in pure Python."""

    def __init__(self) -> None:
        # The reaper holds only the table, so dropping the manager closes it.
        self._t = _Table()
        weakref.finalize(self, _close_table, self._t)

    def _enter(self, name: str, owner: str, ttl: float, fired: Fired) -> tuple[_Table, float]:
        t = self._t
        if t.closed:
            raise Closed("the lock manager is closed")
        now = time.monotonic()
        t.expire(name, now, fired)
        return t, now

    def try_acquire(self, name: str, owner: str, ttl: float) -> PythonLease | None:
        """The lock now if it is free, else None."""
        name, ttl = _check(name, ttl)
        fired: Fired = []
        with self._t.mutex:
            t, now = self._enter(name, owner, ttl, fired)
            g = t.take_if_free(name, owner, ttl, now)
        _fire(fired)
        return None if g is None else PythonLease(self, name, owner, ttl, g)

    def _acquire_or_queue(self, name: str, owner: str, ttl: float, notify: Notify) -> Grant | int:
        fired: Fired = []
        with self._t.mutex:
            t, now = self._enter(name, owner, ttl, fired)
            g = t.take_if_free(name, owner, ttl, now)
            if g is None:
                t.last_waiter += 1
                wid = t.last_waiter
                t.entries[name].waiters.append(_Waiter(wid, owner, ttl, notify))
                if name not in t.contended:
                    t.contended.add(name)
                    t.start_reaper()
                    t.wake.notify()
        _fire(fired)
        return wid if g is None else g

    def _acquire_blocking(self, name: str, owner: str, ttl: float, wait: float | None) -> Grant:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            slot = _Slot()
            got = self._acquire_or_queue(name, owner, ttl, slot)
            if not isinstance(got, int):
                return got
            g = self._wait_slot(name, got, slot, deadline)
            if g is None:
                raise timeout(name, wait)
            # A grant that ran out while this thread waited to run is no grant.
            claimed = self._claim(name, g, ttl)
            if claimed is not None:
                return claimed
            if deadline is not None and time.monotonic() >= deadline:
                raise timeout(name, wait)

    def _wait_slot(
        self, name: str, waiter: int, slot: _Slot, deadline: float | None
    ) -> Grant | None:
        """The grant that lands in `slot`, or None once `deadline` passes."""
        while True:
            left = _SIGNAL_SLICE if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                arrived = slot.gate.acquire(timeout=left)
            except BaseException:
                if not self.cancel(name, waiter):
                    slot.gate.acquire()
                    if isinstance(slot.outcome, tuple):
                        self._release(name, slot.outcome[0])
                raise
            if arrived:
                return _unwrap(slot.outcome)
            if deadline is not None and time.monotonic() >= deadline:
                if self.cancel(name, waiter):
                    return None
                slot.gate.acquire()  # decided already: the outcome lands at once
                return _unwrap(slot.outcome)

    def _claim(self, name: str, grant: Grant, ttl: float) -> Grant | None:
        """Take up a grant handed to a waiter while it was not running: the lease
        restarts from now, so its expiry counts from the moment the waiter gets it.
        None if it ran out first (it may be someone else's by now)."""
        fired: Fired = []
        try:
            with self._t.mutex:
                now = time.monotonic()
                try:
                    h = self._held(name, grant[0], now)
                except LockLost:
                    self._t.expire(name, now, fired)
                    return None
                h.deadline = now + ttl
                return (grant[0], now + ttl, time.time() + ttl)
        finally:
            _fire(fired)

    def acquire(self, name: str, owner: str, ttl: float, wait: float | None = None) -> PythonLease:
        """Block until granted; `LockTimeout` after `wait` (None: forever)."""
        name, ttl = _check(name, ttl)
        wait = _validate.wait(wait)
        return PythonLease(self, name, owner, ttl, self._acquire_blocking(name, owner, ttl, wait))

    def acquire_async(
        self, name: str, owner: str, ttl: float, callback: Callable[[object], object]
    ) -> PythonLease | int:
        """A lease now, or a waiter id; `callback(lease_or_exception)` is called later."""
        name, ttl = _check(name, ttl)

        def notify(outcome: object) -> None:
            arg: object = outcome
            if isinstance(outcome, tuple):
                arg = PythonLease(self, name, owner, ttl, outcome)
            try:
                callback(arg)
            except Exception:
                if isinstance(outcome, tuple):
                    self._release(name, outcome[0])
                raise

        got = self._acquire_or_queue(name, owner, ttl, notify)
        return got if isinstance(got, int) else PythonLease(self, name, owner, ttl, got)

    def cancel(self, name: str, waiter: int) -> bool:
        """Leave the queue: True if still queued, False if the grant is on its way."""
        fired: Fired = []
        with self._t.mutex:
            t = self._t
            entry = t.entries.get(name)
            if entry is None:
                return False
            for w in entry.waiters:
                if w.id == waiter:
                    entry.waiters.remove(w)
                    break
            else:
                return False
            now = time.monotonic()
            t.expire(name, now, fired)
            t.hand_over(name, now, fired)
        _fire(fired)
        return True

    def _held(self, name: str, token: int, now: float) -> _Holder:
        entry = self._t.entries.get(name)
        h = None if entry is None else entry.holder
        if h is None or h.token != token or h.deadline <= now:
            raise LockLost(f"lock {name!r} (token {token}) is no longer held")
        return h

    def _release(self, name: str, token: int) -> None:
        fired: Fired = []
        try:
            with self._t.mutex:
                t = self._t
                now = time.monotonic()
                try:
                    self._held(name, token, now)
                except LockLost:
                    t.expire(name, now, fired)
                    raise
                t.entries[name].holder = None
                t.hand_over(name, now, fired)
        finally:
            _fire(fired)

    def _refresh(self, name: str, token: int, ttl: float) -> float:
        fired: Fired = []
        try:
            with self._t.mutex:
                now = time.monotonic()
                try:
                    h = self._held(name, token, now)
                except LockLost:
                    self._t.expire(name, now, fired)
                    raise
                h.deadline = now + ttl
                return time.time() + ttl
        finally:
            _fire(fired)

    def holder(self, name: str) -> tuple[str, int, float] | None:
        """`(owner, token, remaining_seconds)` of the live holder, or None."""
        with self._t.mutex:
            entry = self._t.entries.get(name)
            h = None if entry is None else entry.holder
            now = time.monotonic()
            if h is None or h.deadline <= now:
                return None
            return (h.owner, h.token, h.deadline - now)

    def waiting(self, name: str) -> int:
        """Number of waiters queued for `name`."""
        with self._t.mutex:
            entry = self._t.entries.get(name)
            return 0 if entry is None else len(entry.waiters)

    def lock(self, name: str, owner: str, ttl: float, wait: float | None = None) -> PythonLockGuard:
        """A context manager that acquires on enter and releases on exit."""
        name, ttl = _check(name, ttl)
        return PythonLockGuard(self, name, owner, ttl, _validate.wait(wait))

    def close(self) -> None:
        """Fail every waiter with `Closed`; later calls raise `Closed`."""
        _close_table(self._t)

    @property
    def closed(self) -> bool:
        return self._t.closed


def _unwrap(outcome: object) -> Grant:
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, tuple)
    return outcome


def _close_table(t: _Table) -> None:
    fired: Fired = []
    with t.mutex:
        if t.closed:
            return
        t.closed = True
        for entry in t.entries.values():
            for w in entry.waiters:
                fired.append((w.notify, Closed("the lock manager was closed")))
        t.entries.clear()
        t.contended.clear()
        t.wake.notify_all()
    _fire(fired)


class PythonLease(SyncLease):
    """A held lock of the pure manager: its fencing token and lease."""

    __slots__ = ("_expires_at", "_manager", "_ttl", "name", "owner", "token")

    def __init__(
        self, manager: PythonLockManager, name: str, owner: str, ttl: float, grant: Grant
    ) -> None:
        self._manager = manager
        self.name = name
        self.owner = owner
        self.token = grant[0]
        self._ttl = float(ttl)
        self._expires_at = grant[2]

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def refresh(self, ttl: float | None = None) -> None:
        new = self._ttl if ttl is None else _validate.ttl(ttl)
        self._expires_at = self._manager._refresh(self.name, self.token, new)
        self._ttl = new

    def release(self) -> None:
        self._manager._release(self.name, self.token)

    def __repr__(self) -> str:
        return (
            f"PythonLease(name={self.name!r}, owner={self.owner!r}, "
            f"token={self.token}, ttl={self._ttl})"
        )


class PythonLockGuard(SyncLease):
    """`with manager.lock(name, owner, ttl, wait) as lease:` on the blocking surface.

    The guard is its own lease once entered (one object per holding, not two):
    `token`, `refresh()` and `release()` act on the current holding.
    """

    __slots__ = ("_active", "_expires_at", "_manager", "_ttl", "_wait", "name", "owner", "token")

    def __init__(
        self, manager: PythonLockManager, name: str, owner: str, ttl: float, wait: float | None
    ) -> None:
        self._manager = manager
        self.name = name
        self.owner = owner
        self._ttl = ttl
        self._wait = wait
        self.token = 0
        self._expires_at = 0.0
        self._active = False

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def __enter__(self) -> PythonLockGuard:
        token, _, expires_at = self._manager._acquire_blocking(
            self.name, self.owner, self._ttl, self._wait
        )
        previous, self.token, self._expires_at = self.token, token, expires_at
        if self._active:
            # Entered twice without exiting: the first holding is given up, not leaked.
            with contextlib.suppress(LockLost):
                self._manager._release(self.name, previous)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._active:
            self._active = False
            try:
                self._manager._release(self.name, self.token)
            except LockLost:
                if exc_type is None:
                    raise

    def refresh(self, ttl: float | None = None) -> None:
        new = self._ttl if ttl is None else _validate.ttl(ttl)
        if not self._active:
            raise LockLost(f"lock {self.name!r} (token {self.token}) is not held")
        self._expires_at = self._manager._refresh(self.name, self.token, new)
        self._ttl = new

    def release(self) -> None:
        if not self._active:
            raise LockLost(f"lock {self.name!r} (token {self.token}) is not held")
        self._active = False
        self._manager._release(self.name, self.token)

    def __repr__(self) -> str:
        return (
            f"PythonLockGuard(name={self.name!r}, owner={self.owner!r}, "
            f"token={self.token}, ttl={self._ttl})"
        )
