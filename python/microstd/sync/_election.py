"""Leader election on top of a lock: hold the lock, renew it in the background.

Used by the backends whose election is "the holder of lock `name` leads"
(memory and Redis). etcd has its own, with etcd's election semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from microstd.errors import LockLost, MicrostdError
from microstd.sync.base import Leadership, Lease, LostSignal, SyncLeadership, SyncLease

__all__ = ["RenewingLeadership", "RenewingSyncLeadership", "renew_interval"]

_log = logging.getLogger("microstd.sync")


def renew_interval(ttl: float) -> float:
    """Renew at a third of the lease, so two renewals can fail before it runs out."""
    return max(ttl / 3.0, 0.01)


class RenewingLeadership(Leadership):
    """Leadership held as a lease renewed by an asyncio task."""

    def __init__(self, lease: Lease, candidate: str) -> None:
        self.name = lease.name
        self.candidate = candidate
        self.token = lease.token
        self.lost = LostSignal()
        self._lease = lease
        self._resigned = False
        self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        try:
            while True:
                await asyncio.sleep(renew_interval(self._lease.ttl))
                await self._lease.refresh()
        except asyncio.CancelledError:
            raise
        except LockLost:
            _log.warning("leadership of %r lost by %r", self.name, self.candidate)
        except (MicrostdError, OSError) as exc:
            _log.warning("leadership of %r lost by %r: %s", self.name, self.candidate, exc)
        finally:
            self.lost.set()

    async def resign(self) -> None:
        if self._resigned:
            return
        self._resigned = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(LockLost):
            await self._lease.release()
        self.lost.set()


class RenewingSyncLeadership(SyncLeadership):
    """Leadership held as a lease renewed by a daemon thread."""

    def __init__(self, lease: SyncLease, candidate: str) -> None:
        self.name = lease.name
        self.candidate = candidate
        self.token = lease.token
        self.lost = threading.Event()
        self._lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"microstd-leader-{self.name}", daemon=True
        )
        self._thread.start()

    def _renew(self) -> None:
        try:
            while not self._stop.wait(renew_interval(self._lease.ttl)):
                self._lease.refresh()
        except LockLost:
            _log.warning("leadership of %r lost by %r", self.name, self.candidate)
        except (MicrostdError, OSError) as exc:
            _log.warning("leadership of %r lost by %r: %s", self.name, self.candidate, exc)
        finally:
            self.lost.set()

    def resign(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with contextlib.suppress(LockLost):
            self._lease.release()
        self.lost.set()
