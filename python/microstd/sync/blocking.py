"""`BlockingLocks`: the blocking twin of any async `Locks`, on a private loop thread."""

from __future__ import annotations

import threading

from microstd._loopthread import LoopThread
from microstd.sync.base import (
    DEFAULT_TTL,
    Leadership,
    Lease,
    Locks,
    SyncLeadership,
    SyncLease,
    SyncLocks,
)

__all__ = ["BlockingLeadership", "BlockingLease", "BlockingLocks"]


class BlockingLease(SyncLease):
    """An async lease driven from a plain thread."""

    def __init__(self, lease: Lease, runner: LoopThread) -> None:
        self._lease = lease
        self._runner = runner
        self.name = lease.name
        self.owner = lease.owner
        self.token = lease.token

    @property
    def ttl(self) -> float:
        return self._lease.ttl

    @property
    def expires_at(self) -> float:
        return self._lease.expires_at

    def refresh(self, ttl: float | None = None) -> None:
        self._runner.run(self._lease.refresh(ttl))

    def release(self) -> None:
        self._runner.run(self._lease.release())

    def __repr__(self) -> str:
        return f"Blocking{self._lease!r}"


class BlockingLeadership(SyncLeadership):
    """An async leadership seen from a plain thread; `lost` mirrors the async signal."""

    def __init__(self, leadership: Leadership, runner: LoopThread) -> None:
        self._leadership = leadership
        self._runner = runner
        self.name = leadership.name
        self.candidate = leadership.candidate
        self.token = leadership.token
        self.lost = threading.Event()
        runner.submit(self._mirror())

    async def _mirror(self) -> None:
        await self._leadership.lost
        self.lost.set()

    def resign(self) -> None:
        self._runner.run(self._leadership.resign())
        self.lost.set()


class BlockingLocks(SyncLocks):
    """Runs an async `Locks` on its own event-loop thread and blocks for the result."""

    def __init__(self, locks: Locks) -> None:
        self._locks = locks
        self._runner = LoopThread(f"microstd-sync-{type(locks).__name__}")

    def __repr__(self) -> str:
        return f"BlockingLocks({self._locks!r})"

    def connect(self) -> None:
        self._runner.run(self._locks.connect())

    def close(self) -> None:
        try:
            self._runner.run(self._locks.close())
        finally:
            self._runner.stop()

    def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> SyncLease:
        lease = self._runner.run(self._locks.acquire(name, ttl, wait, owner=owner))
        return BlockingLease(lease, self._runner)

    def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> SyncLeadership:
        leadership = self._runner.run(_elect(self._locks, name, candidate, ttl, wait))
        return BlockingLeadership(leadership, self._runner)

    def leader(self, name: str) -> str | None:
        return self._runner.run(self._locks.leader(name))


async def _elect(
    locks: Locks, name: str, candidate: str, ttl: float, wait: float | None
) -> Leadership:
    return await locks.elect(name, candidate, ttl, wait)
