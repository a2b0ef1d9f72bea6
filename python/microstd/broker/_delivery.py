"""Per-subscription delivery on the async interface: a bounded queue and one task.

Every backend's async subscriptions use this: the router (or the network
client's callback) calls `push(message)` without waiting, and one task per
subscription hands messages to the handler in order. A sync handler is
called on that task, on the event loop; an async handler is awaited there,
so one subscription never runs two handlers at once.

The task takes everything queued at once and hands it out in order. A
full queue either drops the message for this subscriber (counted in
`dropped`) or, with `overflow="block"`, takes it and asks the publisher to
wait for room (`wait_for_room`), so a subscriber holds at most about twice
`max_pending` messages (the batch in hand and the queue) plus one per
blocked publisher. Either way other subscribers are
not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import inspect
import threading
import types
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from microstd import _accel
from microstd.broker.base import ErrorHook, Handler, Message, Overflow, log
from microstd.errors import InvalidArgument

__all__ = [
    "Delivery",
    "Options",
    "check_options",
    "new_queue",
    "report_error",
    "run_outcomes",
    "wait_for_room",
]


async def wait_for_room(owners: Sequence[object]) -> None:
    """Wait until the queues a fan-out left past their bound have room again.

    `owners` is what the core's `send` / `publish` returned (usually empty). A
    delivery that runs on another thread's event loop is not waited for: this
    publisher cannot wait on that loop, and the message is kept anyway.
    """
    me = threading.get_ident()
    for owner in owners:
        delivery = getattr(owner, "delivery", None)
        if isinstance(delivery, Delivery) and delivery.on_thread(me):
            await delivery.wait_for_room()


def run_outcomes() -> tuple[int, int, int, int, int]:
    """`RustQueue.run`'s outcomes, as the core names them: (RUN_DONE, RUN_RAISED,
    RUN_AWAIT, RUN_STOPPED, RUN_OVER_DELIVERED)."""
    core = _accel.require_core()
    return (
        core.RUN_DONE,
        core.RUN_RAISED,
        core.RUN_AWAIT,
        core.RUN_STOPPED,
        core.RUN_OVER_DELIVERED,
    )


def check_options(max_pending: object, overflow: object, drain_timeout: object) -> None:
    """Raise ValueError for option values no backend could honour."""
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise ValueError(f"max_pending must be a positive int, got {max_pending!r}")
    if overflow not in ("block", "drop"):
        raise ValueError(f"overflow must be 'block' or 'drop', got {overflow!r}")
    if isinstance(drain_timeout, bool) or not isinstance(drain_timeout, (int, float)):
        raise ValueError(f"drain_timeout must be seconds, got {drain_timeout!r}")


def report_error(
    exc: BaseException, subscription: object, hook: Callable[[BaseException, object], None] | None
) -> None:
    """Log a handler's exception at WARNING and pass it to the user's hook, if any."""
    pattern = getattr(subscription, "pattern", "?")
    log.warning("broker handler for %r raised %s", pattern, type(exc).__name__, exc_info=exc)
    if hook is not None:
        try:
            hook(exc, subscription)
        except Exception:
            log.exception("broker on_error hook raised")


class Options:
    """The options every backend takes (see `Broker`)."""

    __slots__ = ("drain_timeout", "hook", "max_pending", "overflow")

    def __init__(
        self,
        on_error: ErrorHook | None = None,
        max_pending: int = 10_000,
        overflow: Overflow = "block",
        drain_timeout: float = 5.0,
        **unknown: Any,
    ) -> None:
        if unknown:
            # What is left once a backend took its own options: name the shared ones.
            known = ("drain_timeout", "max_pending", "on_error", "overflow")
            close = difflib.get_close_matches(sorted(unknown)[0], known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidArgument(
                f"unknown broker option(s): {', '.join(sorted(unknown))}; every backend takes"
                f" {', '.join(known)}, plus its own (see the broker docs).{hint}"
            )
        check_options(max_pending, overflow, drain_timeout)
        self.hook = on_error
        self.max_pending = max_pending
        self.overflow: Overflow = overflow
        self.drain_timeout = float(drain_timeout)


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Generator[Any, Any, None]:
    """Carry on a coroutine whose first step already ran and yielded `yielded`.

    The task awaiting this sees exactly what it would have seen awaiting the
    coroutine from the start: each yielded future, each value or exception
    sent back in.
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration:
            return


def new_queue(
    impl: str,
    max_pending: int,
    drop_when_full: bool,
    waker: Callable[[], object],
) -> Any:
    """A subscriber queue: `RustQueue`, or the twin `PythonQueue` with `impl="python"`.
    Its `push(message)` returns True when the queue is past its bound (block policy)."""
    if impl == "rust" and _accel.core is not None:
        return _accel.core.RustQueue(max_pending, drop_when_full, waker)
    from microstd.broker._pure import PythonQueue

    return PythonQueue(max_pending, drop_when_full, waker)


class Delivery:
    """The queue and task that feed one subscription's handler.

    `target` is what the fan-out calls (or, for `RustQueue`, pushes into
    natively); `push(message)` is the same from Python code.
    """

    #: What happens to messages a drain could not reach, for the log.
    LEFT_BEHIND = "dropped"

    __slots__ = (
        "_loop",
        "_room",
        "_stopped",
        "_thread",
        "_waiting",
        "_wake",
        "closed",
        "draining",
        "gate",
        "handler",
        "push",
        "queue",
        "report",
        "target",
        "task",
    )

    def __init__(
        self,
        handler: Handler,
        *,
        max_pending: int,
        overflow: Overflow,
        report: Callable[[BaseException], None],
        gate: Callable[[Message], Awaitable[bool]] | None = None,
        impl: str = "rust",
    ) -> None:
        self.handler = handler
        self.report = report
        # An optional async check run before the handler (Redis queue-group claims).
        self.gate = gate
        self.closed = False
        # Set while the source hands over what it already received (an
        # unsubscribe's drain): publishers then stop waiting for room.
        self.draining = False
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._waiting = 0
        self.queue = new_queue(impl, max_pending, overflow == "drop", self._wakeup)
        # True when the queue is past its bound: the caller waits for room.
        self.push: Callable[[Message], bool] = self.queue.push
        # What the core fans out to: `RustQueue` itself (pushed to natively), or the
        # twin queue's `push`; either way each push says whether the publisher waits.
        self.target: object = self.queue if impl == "rust" and _accel.core else self.push
        self.task = self._loop.create_task(self._run())

    @property
    def dropped(self) -> int:
        return int(self.queue.dropped)

    def _wakeup(self) -> None:
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            # A publish from another thread (the sync surface of a shared instance).
            self._loop.call_soon_threadsafe(self._wake.set)

    def on_thread(self, ident: int) -> bool:
        """True if this delivery's event loop runs on thread `ident`."""
        return self._thread == ident

    def wake_publishers(self) -> None:
        """Let publishers waiting for room re-check (after `draining` is set)."""
        self._room.set()

    async def wait_for_room(self) -> None:
        """Return once the queue is back within `max_pending` (or delivery stopped)."""
        while self.queue.over() and not self.closed and not self.draining:
            self._waiting += 1
            self._room.clear()
            try:
                await self._room.wait()
            finally:
                self._waiting -= 1

    async def _run(self) -> None:
        take = self.queue.take
        wake = self._wake
        # The Rust queue can step handlers natively (`RustQueue.run`); a gate
        # (Redis claims) needs the plain loop.
        native = getattr(self.queue, "run", None) if self.gate is None else None
        while True:
            batch = take()
            if not batch:
                if self.closed:
                    return
                await self._idle(wake)
                continue
            if self._waiting:
                self._room.set()
            if native is not None:
                if not await self._run_native(native, batch):
                    return
            elif not await self._run_batch(batch):
                return

    async def _idle(self, wake: asyncio.Event) -> None:
        """Wait for the next push (a durable delivery also wakes for its timers)."""
        await wake.wait()
        wake.clear()

    def _abandon(self, messages: Sequence[Message]) -> None:
        """Messages this delivery will never hand to its handler (a stop, a drain that
        ran out of time): a core subscription drops them."""
        del messages

    async def _run_batch(self, batch: list[Message]) -> bool:
        handler = self.handler
        started = 0  # messages handed to the gate or handler so far
        try:
            for message in batch:
                if self._stopped:
                    return False
                started += 1
                try:
                    if self.gate is not None and not await self.gate(message):
                        continue
                    result = handler(message)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    self.report(exc)
            return True
        finally:
            if started < len(batch):
                self._abandon(batch[started:])

    async def _run_native(self, run: Callable[..., Any], batch: list[Message]) -> bool:
        handler = self.handler
        done, raised, _await, stopped, _over = run_outcomes()
        i = 0
        n = len(batch)
        started = 0
        try:
            while i < n:
                i, outcome, obj = run(handler, batch, i)
                if outcome == done:
                    started = n
                    return True
                if outcome == stopped:
                    started = i
                    return False
                started = i + 1
                if outcome == raised:
                    self.report(obj)
                else:
                    try:
                        if type(obj) is tuple:
                            await _resume(*obj)
                        elif inspect.isawaitable(obj):
                            await obj
                    except Exception as exc:
                        self.report(exc)
                i += 1
            return True
        finally:
            if started < n:
                self._abandon(batch[started:])

    def stop(self) -> None:
        """No more messages: queued ones are abandoned, the running handler finishes."""
        self.closed = True
        self._stopped = True
        left = self.queue.take()
        self.queue.close(True)
        self._room.set()
        self._wake.set()
        if left:
            self._abandon(left)

    async def drain(self, timeout: float) -> None:
        """Stop taking messages, handle what is queued, cancel after `timeout` seconds.

        From the delivery's own task (a handler unsubscribing itself) it only
        closes the queue: the task handles what is left, then ends.
        """
        self.closed = True
        self.queue.close(False)
        self._room.set()
        self._wake.set()
        if asyncio.current_task() is self.task or self.task.done():
            return
        done, _ = await asyncio.wait({self.task}, timeout=max(0.0, timeout))
        if not done:
            self._stopped = True
            left = self.queue.take()
            self.queue.close(True)
            log.warning(
                "broker: drain did not finish in %.1fs: handler cancelled, %d queued message(s) %s",
                timeout,
                len(left),
                self.LEFT_BEHIND,
            )
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            if left:
                self._abandon(left)

    async def join(self) -> None:
        """Wait for the task to end (not from within the handler itself)."""
        if asyncio.current_task() is not self.task and not self.task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
