"""What the fault tests share: short client timeouts, bounded waits, and a watcher of
a subscription."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from microstd.broker import Message
from microstd.errors import ConnectionFailed, ConnectionRestored

__all__ = [
    "FAST",
    "FAST_NATS",
    "HANG",
    "RECOVER",
    "Watcher",
    "clean_up",
    "eventually",
    "fails_fast",
    "never_hangs",
    "stop_tasks",
    "wait_until",
]

T = TypeVar("T")

#: Engine options for the clients under test: every wait is at most a second.
FAST: dict[str, Any] = {"connect_timeout": 1.0, "timeout": 1.0, "ping_interval": 1.0}
#: The NATS client also retries its connection quickly.
FAST_NATS: dict[str, Any] = {**FAST, "reconnect_time_wait": 0.1}
#: How long a call under FAST timeouts may take before the test calls it hung.
#: Generous on purpose: it separates "failed after its timeout" from "hung".
HANG = 15.0
#: How long a client may take to work again once its server is back.
RECOVER = 30.0


async def never_hangs(call: Awaitable[T], bound: float = HANG) -> T:
    """`await call`, failing the test if it takes longer than `bound` seconds."""
    try:
        return await asyncio.wait_for(call, bound)
    except asyncio.TimeoutError:
        raise AssertionError(f"hung: no result and no error within {bound}s") from None


async def fails_fast(call: Awaitable[object], bound: float = HANG) -> ConnectionFailed:
    """The `ConnectionFailed` that `call` raises (within `bound` seconds)."""
    try:
        await never_hangs(call, bound)
    except ConnectionFailed as exc:
        return exc
    raise AssertionError("expected ConnectionFailed, but the call succeeded")


async def eventually(call: Callable[[], Awaitable[T]], seconds: float = RECOVER) -> T:
    """`call()`'s result once it stops raising `ConnectionFailed` (polled until `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await never_hangs(call())
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def wait_until(check: Callable[[], bool], seconds: float = RECOVER) -> None:
    """Poll `check()` until it is true; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(0.05)


async def stop_tasks(
    *tasks: asyncio.Task[Any],
    bound: float = HANG,
    expected: tuple[type[BaseException], ...] = (),
) -> None:
    """Cancel each of `tasks` and wait for it to end; fail the test if one has not
    ended within `bound` seconds, or ended with an error other than `expected`.
    It is cancelled again while it runs: on CPython 3.11 a cancel that lands as an
    `asyncio.wait_for` inside it finishes is swallowed (bpo-42130), and a task
    looping over calls would then never end.

    Called in a `finally` whose body failed (or anywhere an error is being
    handled), it does not replace that error with its own, as pytest would report
    only the last: what it found is added to that error as a note instead."""
    deadline = time.monotonic() + bound
    problems: list[str] = []
    cause: BaseException | None = None  # the first unexpected error, for its traceback
    for task in tasks:  # every one cancelled, even after one that did not end
        task.cancel()
        while not task.done() and time.monotonic() < deadline:
            await asyncio.wait({task}, timeout=0.2)
            task.cancel()
        if not task.done():
            problems.append(f"{task!r} did not end within {bound}s of its cancel")
        elif not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if not isinstance(error, expected):
                problems.append(f"{task!r} ended with {error!r}")
                cause = cause or error
    if not problems:
        return
    failing = sys.exc_info()[1]
    if failing is None:
        raise AssertionError("; ".join(problems)) from cause
    for problem in problems:
        _add_note(failing, f"stop_tasks: {problem}")


async def clean_up(call: Awaitable[object], what: str, bound: float = HANG) -> None:
    """`await never_hangs(call)`, for a clean-up (named `what` in the report) in a
    `finally`. After a body that passed it raises as `never_hangs` does; after one
    that failed (anywhere an error is being handled), that it raised or hung is
    added to that error as a note instead of raised over it, as in `stop_tasks`."""
    failing = sys.exc_info()[1]  # read now: in the except below it is the clean-up's
    try:
        await never_hangs(call, bound)
    except Exception as exc:
        if failing is None:
            raise
        _add_note(failing, f"clean_up: {what} raised {exc!r}")


def _add_note(error: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:  # no notes: in the test's captured output instead
        print(note, file=sys.stderr)


class Watcher:
    """A subscription's received bodies and the connection events its broker reported."""

    def __init__(self) -> None:
        self.bodies: list[object] = []
        self.events: list[type[BaseException]] = []

    def handler(self, message: Message) -> None:
        self.bodies.append(message.decode())

    def on_error(self, exc: BaseException, subscription: object) -> None:
        self.events.append(type(exc))

    def reported_loss_and_return(self) -> bool:
        """A ConnectionFailed, then a ConnectionRestored, was reported."""
        if ConnectionFailed not in self.events:
            return False
        return ConnectionRestored in self.events[self.events.index(ConnectionFailed) :]
