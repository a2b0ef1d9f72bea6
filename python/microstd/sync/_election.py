"""Leader election on top of a lock: hold the lock, renew it in the background.

Every backend's leadership is one of these two classes (memory, Redis and
etcd; etcd's contenders queue with etcd's election semantics, then hold their
lease the same way). They hold the rule of `_expiry` once, for every backend:
`lost` is set at the lease's *local* expiry minus the safety margin unless a
renewal was confirmed before then, whether or not any reply came. Each renewal
is bounded by the time left until that point, so a renewal that hangs (a
frozen server) cannot keep a leader believing it leads.

A lease's local expiry counts from when the request that granted or last
extended it was *sent*: a backend's lease reports that as `_sent_at`
(monotonic seconds); one that does not (the in-process memory:// leases, which
share the core's clock) counts from when the leadership starts. A renewal that
fails for a reason that may pass (`ConnectionFailed`) is retried until the
time is up; `LockLost` ends the leadership at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from microstd.errors import ConnectionFailed, LockLost, MicrostdError
from microstd.sync._expiry import give_up_at
from microstd.sync.base import Leadership, Lease, LostSignal, SyncLeadership, SyncLease

__all__ = ["RenewingLeadership", "RenewingSyncLeadership", "renew_interval"]

_log = logging.getLogger("microstd.sync")


def renew_interval(ttl: float) -> float:
    """Renew at a third of the lease, so two renewals can fail before it runs out."""
    return max(ttl / 3.0, 0.01)


def _retry_pause(ttl: float) -> float:
    """How soon a renewal that failed with `ConnectionFailed` is tried again."""
    return max(ttl / 20.0, 0.01)


def _sent_at(lease: object) -> float:
    sent = getattr(lease, "_sent_at", None)
    return float(sent) if isinstance(sent, (int, float)) else time.monotonic()


class RenewingLeadership(Leadership):
    """Leadership held as a lease renewed by an asyncio task."""

    def __init__(self, lease: Lease, candidate: str) -> None:
        self.name = lease.name
        self.candidate = candidate
        self.token = lease.token
        self.lost = LostSignal()
        self._lease = lease
        self._resigned = False
        # When the lease must be considered lost unless a renewal is confirmed.
        self._give_up = give_up_at(_sent_at(lease), lease.ttl)
        self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        try:
            why = await self._keep()
            _log.warning("leadership of %r lost by %r: %s", self.name, self.candidate, why)
        finally:
            self.lost.set()

    async def _keep(self) -> str:
        """Renew until the lease is lost; return why."""
        lease = self._lease
        next_at = time.monotonic() + renew_interval(lease.ttl)
        while True:
            await asyncio.sleep(max(0.0, min(next_at, self._give_up) - time.monotonic()))
            sent = time.monotonic()
            left = self._give_up - sent
            if left <= 0:
                return "no renewal was confirmed before the lease's local expiry"
            try:
                await asyncio.wait_for(lease.refresh(), left)
            except asyncio.TimeoutError:
                # wait_for's own: a refresh reports its failures as microstd errors.
                return "the renewal was not answered before the lease's local expiry"
            except LockLost:
                return "the lease was no longer held"
            except ConnectionFailed as exc:
                _log.info("renewing leadership of %r failed, retrying: %s", self.name, exc)
                next_at = time.monotonic() + _retry_pause(lease.ttl)
                continue
            except (MicrostdError, OSError) as exc:
                return f"renewal failed: {exc}"
            self._give_up = give_up_at(sent, lease.ttl)
            next_at = sent + renew_interval(lease.ttl)

    async def resign(self) -> None:
        if self._resigned:
            return
        self._resigned = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        try:
            with contextlib.suppress(LockLost):
                await self._lease.release()
        finally:
            self.lost.set()


class RenewingSyncLeadership(SyncLeadership):
    """Leadership held as a lease renewed by a daemon thread (memory:// only: its
    renewals are in-process calls, which cannot hang, so they need no bound)."""

    def __init__(self, lease: SyncLease, candidate: str) -> None:
        self.name = lease.name
        self.candidate = candidate
        self.token = lease.token
        self.lost = threading.Event()
        self._lease = lease
        self._give_up = give_up_at(_sent_at(lease), lease.ttl)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"microstd-leader-{self.name}", daemon=True
        )
        self._thread.start()

    def _renew(self) -> None:
        try:
            why = self._keep()
            if why is not None:
                _log.warning("leadership of %r lost by %r: %s", self.name, self.candidate, why)
        finally:
            self.lost.set()

    def _keep(self) -> str | None:
        """Renew until the lease is lost (return why) or resigned (return None)."""
        lease = self._lease
        next_at = time.monotonic() + renew_interval(lease.ttl)
        while not self._stop.wait(max(0.0, min(next_at, self._give_up) - time.monotonic())):
            sent = time.monotonic()
            if sent >= self._give_up:
                return "no renewal was confirmed before the lease's local expiry"
            try:
                lease.refresh()
            except LockLost:
                return "the lease was no longer held"
            except (MicrostdError, OSError) as exc:
                return f"renewal failed: {exc}"
            self._give_up = give_up_at(sent, lease.ttl)
            next_at = sent + renew_interval(lease.ttl)
        return None

    def resign(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        try:
            with contextlib.suppress(LockLost):
                self._lease.release()
        finally:
            self.lost.set()
