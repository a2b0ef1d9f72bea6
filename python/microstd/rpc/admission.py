"""`Budget`: a FIFO semaphore counted in bytes, bounding what requests hold at once.

The server charges each request the worst case of its decoded size before it
reads the body, and gives it back when the reply is made, so the memory that
requests in flight can pin is bounded whatever they send. Waiters are served
in arrival order: a large request is not starved by a stream of small ones.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["Budget"]


class Budget:
    """`capacity` units; `try_take` / `take` / `give`. One event loop at a time."""

    __slots__ = ("_waiters", "capacity", "free")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def try_take(self, amount: int) -> bool:
        """Take `amount` now if it fits and nobody is waiting before us."""
        if amount <= self.free and not self._waiters:
            self.free -= amount
            return True
        return False

    async def take(self, amount: int, timeout: float) -> bool:
        """Take `amount`, waiting in line up to `timeout` seconds; False if it did not fit."""
        if self.try_take(amount):
            return True
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except BaseException as exc:
            granted = waiter.done() and not waiter.cancelled()
            if not granted:
                waiter.cancel()
                self._remove(entry)
            if isinstance(exc, asyncio.TimeoutError):
                return granted  # granted just as the wait ran out: keep it
            if granted:
                self.give(amount)  # cancelled: hand it on
            raise
        return True

    def give(self, amount: int) -> None:
        """Return `amount`; wakes waiters in order while they fit."""
        self.free += amount
        waiters = self._waiters
        while waiters:
            need, waiter = waiters[0]
            if waiter.done():
                waiters.popleft()
                continue
            if need > self.free:
                break
            waiters.popleft()
            self.free -= need
            waiter.set_result(None)

    def _remove(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        try:
            self._waiters.remove(entry)
        except ValueError:
            return
        # The head may have been blocking smaller requests behind it.
        self.give(0)

    @property
    def waiting(self) -> int:
        """Requests waiting in line."""
        return len(self._waiters)
