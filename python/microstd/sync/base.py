"""The sync interface: named locks with leases and fencing tokens, and leader election.

`Locks` is the async interface every backend implements; `SyncLocks` is its
blocking twin with the same method names. A `Lease` is one holding of a lock:
its `token` is a fencing token, strictly increasing per name, to pass to the
resource the lock protects so it can refuse a stale holder's writes.
Backends raise only `microstd.errors` exceptions.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import weakref
from collections.abc import Generator
from types import TracebackType
from typing import Any

from microstd import _validate
from microstd._lifecycle import AsyncResource, SyncResource
from microstd.errors import LockLost

__all__ = [
    "DEFAULT_TTL",
    "Leadership",
    "Lease",
    "Locks",
    "LostSignal",
    "SyncLeadership",
    "SyncLease",
    "SyncLocks",
    "validate_name",
    "validate_ttl",
    "validate_wait",
]

_log = logging.getLogger("microstd.sync")

#: Lease length, in seconds, when none is given.
DEFAULT_TTL = 10.0


def validate_name(name: object) -> str:
    """`name` if it is a non-empty str without lone surrogates, else `InvalidKey`
    (the shared rules of `microstd._validate`)."""
    return _validate.key(name, "lock names")


def validate_ttl(ttl: object) -> float:
    """`ttl` as float seconds if finite and > 0, else `InvalidArgument`: a lease always expires."""
    return _validate.ttl(ttl)


def validate_wait(wait: object) -> float | None:
    """`wait` as float seconds (None: forever; 0: try once), else `InvalidArgument`."""
    return _validate.wait(wait)


class Lease(abc.ABC):
    """One holding of a lock (async surface); `async with lease:` releases it on exit.

    `token` is the fencing token; `expires_at` is wall-clock epoch seconds.
    """

    name: str
    owner: str
    token: int

    @property
    @abc.abstractmethod
    def ttl(self) -> float:
        """The lease length in seconds, as last set."""

    @property
    @abc.abstractmethod
    def expires_at(self) -> float:
        """When the lease runs out unless refreshed, as wall-clock epoch seconds."""

    @abc.abstractmethod
    async def refresh(self, ttl: float | None = None) -> None:
        """Extend the lease to `ttl` (default: its ttl) from now; `LockLost` if no longer held."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Give the lock up; `LockLost` if it was no longer held."""

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _release_on_exit(self.release(), exc_type is not None)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, owner={self.owner!r}, "
            f"token={self.token}, ttl={self.ttl})"
        )


async def _release_on_exit(release: Any, propagating: bool) -> None:
    try:
        await release
    except LockLost:
        # A lost lease is news only when the block itself succeeded.
        if not propagating:
            raise


class SyncLease(abc.ABC):
    """One holding of a lock (blocking surface); `with lease:` releases it on exit."""

    name: str
    owner: str
    token: int

    @property
    @abc.abstractmethod
    def ttl(self) -> float:
        """The lease length in seconds, as last set."""

    @property
    @abc.abstractmethod
    def expires_at(self) -> float:
        """When the lease runs out unless refreshed, as wall-clock epoch seconds."""

    @abc.abstractmethod
    def refresh(self, ttl: float | None = None) -> None:
        """Extend the lease to `ttl` (default: its ttl) from now; `LockLost` if no longer held."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up; `LockLost` if it was no longer held."""


class LostSignal:
    """Set once a leadership is lost: `await leadership.lost`, `await lost.wait()`,
    `lost.is_set()`. Safe to set from any thread."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._flag.is_set()

    def set(self) -> None:
        with self._lock:
            if self._flag.is_set():
                return
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self) -> None:
        """Return once the signal is set."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._flag.is_set():
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        await fut

    def __await__(self) -> Generator[Any, None, None]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"LostSignal(set={self.is_set()})"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Leadership(abc.ABC):
    """Being the elected leader of `name` (async surface). The lease is renewed in
    the background; `lost` is set when it is lost or resigned."""

    name: str
    candidate: str
    token: int
    lost: LostSignal

    @abc.abstractmethod
    async def resign(self) -> None:
        """Stop leading: release the lease and set `lost`. Idempotent."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, candidate={self.candidate!r}, "
            f"token={self.token}, lost={self.lost.is_set()})"
        )


class SyncLeadership(abc.ABC):
    """Being the elected leader of `name` (blocking surface); `lost` is a threading.Event."""

    name: str
    candidate: str
    token: int
    lost: threading.Event

    @abc.abstractmethod
    def resign(self) -> None:
        """Stop leading: release the lease and set `lost`. Idempotent."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, candidate={self.candidate!r}, "
            f"token={self.token}, lost={self.lost.is_set()})"
        )


class _LockContext:
    """What `Locks.lock()` returns: acquires on enter, releases on exit."""

    __slots__ = ("_args", "_lease", "_locks")

    def __init__(self, locks: Locks, args: tuple[str, float, float | None, str | None]) -> None:
        self._locks = locks
        self._args = args
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        name, ttl, wait, owner = self._args
        self._lease = await self._locks.acquire(name, ttl, wait, owner=owner)
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await _release_on_exit(lease.release(), exc_type is not None)


class Locks(AsyncResource, abc.ABC):
    """Async locks and elections. Use as `async with locks:` or `connect()` / `close()`.

    `close()` resigns the leaderships won through this handle (a backend's
    `elect` hands each to `_won`)."""

    def _won(self, leadership: Leadership) -> Leadership:
        """Track `leadership` so `close()` resigns it; returns it."""
        self.__dict__.setdefault("_leaderships", weakref.WeakSet()).add(leadership)
        return leadership

    async def _end_started(self) -> None:
        for leadership in list(self.__dict__.get("_leaderships", ())):
            try:
                await leadership.resign()
            except Exception as exc:  # the server may be gone: its TTL ends the lease
                _log.warning("closing %r: resigning %r failed: %s", self, leadership, exc)

    @abc.abstractmethod
    async def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Lease:
        """Take lock `name` for `ttl` seconds. `wait=None` waits forever, `0` tries
        once; otherwise `LockTimeout` after `wait` seconds. Waiters are served FIFO."""

    def lock(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> _LockContext:
        """`async with locks.lock(name, ttl, wait) as lease:` holds the lock for the block."""
        return _LockContext(self, (name, ttl, wait, owner))

    @abc.abstractmethod
    async def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> Leadership:
        """Return once `candidate` leads `name`; the lease is renewed in the background."""

    @abc.abstractmethod
    async def leader(self, name: str) -> str | None:
        """The candidate leading `name` now, or None."""


class _SyncLockContext:
    __slots__ = ("_args", "_lease", "_locks")

    def __init__(self, locks: SyncLocks, args: tuple[str, float, float | None, str | None]) -> None:
        self._locks = locks
        self._args = args
        self._lease: SyncLease | None = None

    def __enter__(self) -> SyncLease:
        name, ttl, wait, owner = self._args
        self._lease = self._locks.acquire(name, ttl, wait, owner=owner)
        return self._lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                lease.release()
            except LockLost:
                if exc_type is None:
                    raise


class SyncLocks(SyncResource, abc.ABC):
    """The blocking twin of `Locks`: same methods, same semantics."""

    def _won(self, leadership: SyncLeadership) -> SyncLeadership:
        """Track `leadership` so `close()` resigns it; returns it."""
        self.__dict__.setdefault("_leaderships", weakref.WeakSet()).add(leadership)
        return leadership

    def _end_started(self) -> None:
        for leadership in list(self.__dict__.get("_leaderships", ())):
            try:
                leadership.resign()
            except Exception as exc:  # the server may be gone: its TTL ends the lease
                _log.warning("closing %r: resigning %r failed: %s", self, leadership, exc)

    @abc.abstractmethod
    def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> SyncLease:
        """Take lock `name` (blocking); see `Locks.acquire`."""

    def lock(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Any:
        """`with locks.lock(name, ttl, wait) as lease:` holds the lock for the block."""
        return _SyncLockContext(self, (name, ttl, wait, owner))

    @abc.abstractmethod
    def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> SyncLeadership:
        """Return once `candidate` leads `name`; the lease is renewed on a background thread."""

    @abc.abstractmethod
    def leader(self, name: str) -> str | None:
        """The candidate leading `name` now, or None."""
