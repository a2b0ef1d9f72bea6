"""`Deadline`: cancel the current task at an instant, without a timer of its own.

Every RPC carries a deadline, on both sides, so this sits on the hot path.
`asyncio.wait_for` runs the awaitable in a new task; `asyncio.timeout` (3.11)
does not, but arms one `TimerHandle` per use: a pure-Python object pushed on
the loop's heap (compared in Python) and later swept out when cancelled, which
is most of a few microseconds per call and grows with the calls in flight.
Here deadlines share timers instead: each falls into a 1 ms slot, and one timer
per slot and event loop expires them all (so a deadline fires at most 1 ms
late; a call finishing in time takes itself out of its slot, and the last one
out cancels the slot's timer (see `_Slots`), so the loop holds timers only for
deadlines still pending, however far away they are).

The semantics are asyncio.timeout's: past the instant the task is cancelled,
and the `CancelledError` that comes out of the block becomes `TimeoutError`,
unless someone else also cancelled the task, in which case the cancellation
goes on.

    with Deadline(time.monotonic() + 2.0):
        await work()          # TimeoutError past the deadline
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Deadline", "resume"]

#: Slot width in seconds: how late a deadline may fire, traded for shared timers.
RESOLUTION = 0.001
#: Deadlines past `_HORIZON` on the monotonic clock (NaN and infinity included) are
#: armed `FAR` seconds away (about 30 years): slot numbers stay finite, and nothing
#: waits that long.
FAR = 1e9
_HORIZON = 1e15

_get_running_loop = asyncio.get_running_loop
_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]
_current_task = asyncio.current_task
if sys.version_info < (3, 12):
    # Before 3.12 asyncio.current_task is a Python function around the task
    # table: its lookup, directly, saves a frame (this runs twice per call).
    with contextlib.suppress(ImportError):
        from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

        _current_task = _current_tasks.get


class _Group(set["Deadline"]):
    """The deadlines of one slot, and the timer that expires them."""

    __slots__ = ("handle", "recent", "slot")

    def __init__(self, slot: int) -> None:
        super().__init__()
        self.slot = slot
        self.handle: asyncio.TimerHandle | None = None
        self.recent = True


#: Groups made last that outlive being emptied (see `_Slots.remove`).
_RECENT = 4


class _Slots:
    """One event loop's pending deadlines, by slot, one timer per slot in use.

    A group whose last deadline leaves has its timer cancelled, so the loop
    holds timers only for deadlines still pending, however far away (without
    that, a long timeout left a timer per call on the loop's heap until its
    instant). The few most recently made groups are spared while they are
    empty: calls one after another each enter and leave the same slot, and
    re-arming its timer every call would cost a timer per call. A spared group
    is cancelled once newer ones push it out, if empty then.
    """

    __slots__ = ("monotonic", "pending", "recent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pending: dict[int, _Group] = {}
        self.recent: list[_Group] = []
        # asyncio's own loops (and uvloop) keep time with time.monotonic: then a
        # deadline needs no conversion to the loop's clock.
        self.monotonic = type(loop).time is asyncio.BaseEventLoop.time

    def add(self, loop: asyncio.AbstractEventLoop, when: float, deadline: Deadline) -> _Group:
        slot = math.ceil(when / RESOLUTION)
        group = self.pending.get(slot)
        if group is None:
            group = self.pending[slot] = _Group(slot)
            group.handle = loop.call_at(slot * RESOLUTION, self._fire, slot)
            recent = self.recent
            recent.append(group)
            if len(recent) > _RECENT:
                old = recent.pop(0)
                old.recent = False
                if not old:
                    self._cancel(old)
        group.add(deadline)
        return group

    def remove(self, group: _Group, deadline: Deadline) -> None:
        group.discard(deadline)
        if not group and not group.recent:
            self._cancel(group)

    def _cancel(self, group: _Group) -> None:
        handle = group.handle
        if handle is not None:
            group.handle = None
            handle.cancel()
            if self.pending.get(group.slot) is group:
                del self.pending[group.slot]

    def _fire(self, slot: int) -> None:
        group = self.pending.pop(slot, None)
        if group is not None:
            group.handle = None
            for deadline in group:
                deadline._group = None  # the whole group goes: no one-by-one removal
                deadline.expire()


class _Current(threading.local):
    """This thread's event loop (weakly) and its slots: one loop runs per thread, so a
    thread-local is the cheapest way back from a loop to its slots. A thread that
    switches loops starts fresh slots; the old loop's timers keep working on theirs."""

    loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
    slots: _Slots | None = None


_current = _Current()


def _slots(loop: asyncio.AbstractEventLoop) -> _Slots:
    current = _current
    ref, slots = current.loop, current.slots
    if ref is not None and slots is not None and ref() is loop:
        return slots
    slots = _Slots(loop)
    # A loop type without weak references gets fresh slots each time: no sharing, still correct.
    with contextlib.suppress(TypeError):
        current.loop, current.slots = weakref.ref(loop), slots
    return slots


class Deadline:
    """A sync context manager: arming and disarming need no await.

    `at` is a `time.monotonic()` instant, the clock `Context.deadline` uses;
    it is converted to the running loop's clock when entered.
    """

    __slots__ = ("_cancelling", "_group", "_slots", "_task", "at", "expired")

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._task: asyncio.Task[Any] | None = None
        self._group: _Group | None = None
        self._slots: _Slots | None = None
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        try:
            loop = _get_running_loop()
        except RuntimeError:
            loop = None
        task = _current_task(loop) if loop is not None else None
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        slots = self._slots = _slots(loop)  # type: ignore[arg-type]
        when = self.at
        if not when < _HORIZON:  # far away, infinite or NaN
            when = time.monotonic() + FAR
        if not slots.monotonic:
            when = loop.time() + (when - time.monotonic())  # type: ignore[union-attr]
        self._group = slots.add(loop, when, self)  # type: ignore[arg-type]
        return self

    def expire(self) -> None:
        """Cancel the task now (the slot's timer calls this; a server stopping may too)."""
        group = self._group
        if group is not None:
            self._group = None
            self._slots.remove(group, self)  # type: ignore[union-attr]
        if self._task is not None and not self.expired:
            self.expired = True
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        if group is not None:
            self._group = None
            self._slots.remove(group, self)  # type: ignore[union-attr]
        if not self.expired:
            return
        if sys.version_info >= (3, 11):
            # Our cancel is spent: take it back; if others' remain, the task goes on cancelling.
            assert self._task is not None
            if self._task.uncancel() > self._cancelling:
                return
        if exc_type is asyncio.CancelledError:
            # (3.10 cannot tell another cancel from ours: like wait_for, it times out.)
            raise TimeoutError from exc


@types.coroutine
def resume(coro: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """Await `coro`, whose first step the caller ran already (`coro.send(None)`)
    and which suspended yielding `waiting`: what `await coro` would have done
    from there on, in the awaiting task.

    So a caller can run a coroutine's first step and arm a `Deadline` (or
    anything else costly) only when the coroutine did suspend.
    """
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the task: a cancel, mostly
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
