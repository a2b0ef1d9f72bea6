"""`Deadline`: cancel the current task at an instant, as one timer and no task.

Every RPC carries a deadline, on both sides, so this sits on the hot path.
`asyncio.wait_for` runs the awaitable in a new task; `asyncio.timeout` (3.11)
does not, but its async context manager, state machine and rescheduling cost
about twice a bare `loop.call_at` plus `handle.cancel()`, which is all a fixed
deadline needs. The semantics are asyncio.timeout's: past the instant the
task is cancelled, and the `CancelledError` that comes out of the block
becomes `TimeoutError`, unless someone else also cancelled the task, in which
case the cancellation goes on.

    with Deadline(time.monotonic() + 2.0):
        await work()          # TimeoutError past the deadline
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["Deadline"]


class Deadline:
    """A sync context manager (no awaits needed to arm or disarm a timer).

    `at` is a `time.monotonic()` instant, the clock `Context.deadline` uses;
    it is converted to the running loop's clock when entered.
    """

    __slots__ = ("_cancelling", "_handle", "_task", "at", "expired")

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        loop = task.get_loop()
        self._task = task
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        self._handle = loop.call_at(loop.time() + (self.at - time.monotonic()), self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired and exc_type is asyncio.CancelledError:
            if sys.version_info >= (3, 11):
                # Our cancel is spent: take it back; if others' remain, the task goes on cancelling.
                assert self._task is not None
                if self._task.uncancel() > self._cancelling:
                    return
            # (3.10 cannot tell another cancel from ours: like wait_for, it times out.)
            raise TimeoutError from exc
        if self.expired and sys.version_info >= (3, 11):
            # The block swallowed our cancel: withdraw it so it does not hit a later await.
            assert self._task is not None
            self._task.uncancel()
