"""`memory://`: the in-process broker on the Rust routing core (or its pure twin).

    broker = microstd.broker.open("memory://")          # private
    broker = microstd.broker.open("memory://events")    # shared by name in this process
    broker = microstd.broker.open("memory://?impl=python")   # the pure-Python twin

One routing core (`RustBroker`, or `PythonBroker` with `impl="python"`)
matches subjects and fans out; each broker handle owns its subscriptions
and removes them on `close()`, so handles on a shared name stay independent.
A publish is one call into the core, `send(topic, body, headers,
content_type)`: it encodes the body, builds the one message every handler
gets (a `RustMessage` from the Rust core, a `Message` from the twin) and
fans it out.

Where handlers run:
- async interface (`open`): each subscription has a bounded queue and one
  task on the subscriber's event loop; `publish` only queues, then (with
  `overflow="block"`) waits for room in overfilled queues. Sync handlers
  are called on that task, async ones awaited there, in publish order.
- sync interface (`open_sync`): handlers run inline, inside `publish`, in
  the publishing thread, before `publish` returns. An async handler is run
  to completion on a private event-loop thread. No queue is involved, so
  the publisher naturally waits for its subscribers.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from microstd import _accel, _validate
from microstd._backends import Convert, ParsedURL, memory_options, shared_instance
from microstd._loopthread import LoopThread
from microstd.broker._delivery import (
    Delivery,
    Options,
    report_error,
    wait_for_room,
)
from microstd.broker._durable import DurableOptions, StreamInfo
from microstd.broker._memory_durable import (
    DurableMemorySubscription,
    StreamAdmin,
    subscribe_durable,
)
from microstd.broker._pure import PythonBroker
from microstd.broker.base import (
    Broker,
    ErrorHook,
    Handler,
    Message,
    Subscription,
    SyncBroker,
    SyncSubscription,
)
from microstd.errors import Closed

__all__ = ["MemoryBackend", "MemoryBroker", "SyncMemoryBroker", "new_core"]


class Core(Protocol):
    """What `RustBroker` and `PythonBroker` both provide."""

    def subscribe(self, pattern: str, queue: str | None, target: Any, owner: object) -> int: ...
    def unsubscribe(self, sid: int) -> bool: ...
    def set_on_error(self, hook: Callable[[BaseException, object], object] | None) -> None: ...
    # Both return the owners of the queues left past their bound (usually `()`):
    # back-pressure comes back from the fan-out, not through shared state.
    def publish(self, subject: str, message: object) -> tuple[object, ...]: ...
    def send(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> tuple[object, ...]: ...
    def __len__(self) -> int: ...
    @property
    def streams(self) -> Any: ...


def _dispatch_error(exc: BaseException, owner: object) -> None:
    # One hook per core; the owner (a subscription) knows its broker's hook.
    report = getattr(owner, "report", None)
    if report is not None:
        report(exc)
    else:
        report_error(exc, owner, None)


def new_core(impl: str | None = None) -> Core:
    """A fresh routing core: the Rust one, or the pure twin with `impl="python"`."""
    core: Core
    if _validate.impl_choice(impl) == "rust":
        core = _accel.require_core().RustBroker()
    else:
        core = PythonBroker()
    core.set_on_error(_dispatch_error)
    return core


class _AsyncSubscription(Subscription):
    __slots__ = ("_broker", "delivery", "pattern", "queue", "sid")

    def __init__(self, broker: MemoryBroker, pattern: str, queue: str | None) -> None:
        self._broker = broker
        self.pattern = pattern
        self.queue = queue
        self.sid = 0
        self.delivery: Delivery | None = None

    def __repr__(self) -> str:
        return f"Subscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return self.delivery.dropped if self.delivery is not None else 0

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._broker._opts.hook)  # type: ignore[arg-type]

    async def unsubscribe(self, timeout: float | None = None) -> None:
        self._broker._core.unsubscribe(self.sid)
        self._broker._subs.pop(self.sid, None)
        if self.delivery is not None:
            await self.delivery.drain(
                self._broker._opts.drain_timeout if timeout is None else timeout
            )


class MemoryBroker(Broker):
    """The async in-memory broker; see the module docstring for delivery rules."""

    def __init__(self, core: Core, **options: Any) -> None:
        self._core = core
        self._impl = "python" if isinstance(core, PythonBroker) else "rust"
        self._opts = Options(**options)
        self._subs: dict[int, _AsyncSubscription] = {}
        self._durables: set[DurableMemorySubscription] = set()
        self._admin = StreamAdmin(core.streams)
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryBroker(core={type(self._core).__name__}, subscriptions={len(self._subs)})"

    def on_error(self, hook: ErrorHook | None) -> None:
        self._opts.hook = hook

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> Subscription:
        if self._closed:
            raise Closed("broker is closed")
        if not callable(handler):
            raise TypeError("handler must be callable")
        durable_options = DurableOptions.parse(pattern, durable, options)
        if durable_options is not None:
            dsub = await subscribe_durable(
                self, pattern, handler, queue, durable_options, self._publish_raw
            )
            self._durables.add(dsub)
            return dsub
        sub = _AsyncSubscription(self, pattern, queue)
        delivery = Delivery(
            handler,
            max_pending=self._opts.max_pending,
            overflow=self._opts.overflow,
            report=sub.report,
            impl=self._impl,
        )
        try:
            sub.sid = self._core.subscribe(pattern, queue, delivery.target, sub)
        except BaseException:
            delivery.stop()
            await delivery.join()
            raise
        sub.delivery = delivery
        self._subs[sub.sid] = sub
        return sub

    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if self._closed:
            raise Closed("broker is closed")
        over = self._core.send(topic, body, headers, content_type)
        if over:
            await wait_for_room(over)

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        """Publish an already encoded body (a dead letter keeps its content type)."""
        message = Message(topic, data, headers, content_type)
        self._core.streams.store(message)
        over = self._core.publish(topic, message)
        if over:
            await wait_for_room(over)

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        return self._admin.add_stream(name, subjects, max_age, max_count, max_bytes)

    async def streams(self) -> list[StreamInfo]:
        return self._admin.streams()

    async def delete_stream(self, name: str) -> None:
        self._admin.delete_stream(name)

    async def delete_durable(self, stream: str, name: str) -> None:
        self._admin.delete_durable(stream, name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            self._core.unsubscribe(sub.sid)
        deliveries = [s.delivery for s in subs if s.delivery is not None]
        durables = list(self._durables)
        await asyncio.gather(
            *(d.drain(self._opts.drain_timeout) for d in deliveries),
            *(d.unsubscribe() for d in durables),
        )


class _SyncSubscription(SyncSubscription):
    __slots__ = ("_broker", "pattern", "queue", "sid")

    def __init__(self, broker: SyncMemoryBroker, pattern: str, queue: str | None) -> None:
        self._broker = broker
        self.pattern = pattern
        self.queue = queue
        self.sid = 0

    def __repr__(self) -> str:
        return f"SyncSubscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return 0  # inline delivery has no queue to overflow

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._broker._opts.hook)  # type: ignore[arg-type]

    def unsubscribe(self, timeout: float | None = None) -> None:
        # Inline delivery: nothing is ever queued, so there is nothing to drain.
        del timeout
        self._broker._core.unsubscribe(self.sid)
        self._broker._subs.pop(self.sid, None)


class SyncMemoryBroker(SyncBroker):
    """The blocking in-memory broker: handlers run inline in `publish`."""

    def __init__(self, core: Core, **options: Any) -> None:
        self._core = core
        self._opts = Options(**options)
        self._subs: dict[int, _SyncSubscription] = {}
        self._closed = False
        self._runner: LoopThread | None = None
        self._admin = StreamAdmin(core.streams)
        self._options = options
        # Durable subscriptions need timers: they run on an async twin of this
        # broker on a delivery thread of their own.
        self._durable: tuple[LoopThread, MemoryBroker] | None = None

    def __repr__(self) -> str:
        return (
            f"SyncMemoryBroker(core={type(self._core).__name__}, subscriptions={len(self._subs)})"
        )

    def on_error(self, hook: ErrorHook | None) -> None:
        self._opts.hook = hook

    def _inline(self, handler: Handler) -> Callable[[Message], object]:
        if not inspect.iscoroutinefunction(handler):
            return handler
        if self._runner is None:
            self._runner = LoopThread("microstd-broker-async-handlers")
        runner = self._runner

        def run_async(message: Message) -> None:
            result = handler(message)
            if inspect.iscoroutine(result):
                runner.run(result)

        return run_async

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> SyncSubscription:
        if self._closed:
            raise Closed("broker is closed")
        if not callable(handler):
            raise TypeError("handler must be callable")
        if durable is not None or options:
            if self._durable is None:
                self._durable = (
                    LoopThread("microstd-broker-durable"),
                    MemoryBroker(self._core, **self._options),
                )
            runner, twin = self._durable
            twin.on_error(self._opts.hook)
            inner = runner.run(twin.subscribe(pattern, handler, queue, durable=durable, **options))
            return _ThreadedSubscription(runner, inner)
        sub = _SyncSubscription(self, pattern, queue)
        sub.sid = self._core.subscribe(pattern, queue, self._inline(handler), sub)
        self._subs[sub.sid] = sub
        return sub

    def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        if self._closed:
            raise Closed("broker is closed")
        # Async subscribers of a shared instance left past their bound are not waited
        # for: their loop applies the overflow policy, this thread cannot wait on it.
        self._core.send(topic, body, headers, content_type)

    def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        return self._admin.add_stream(name, subjects, max_age, max_count, max_bytes)

    def streams(self) -> list[StreamInfo]:
        return self._admin.streams()

    def delete_stream(self, name: str) -> None:
        self._admin.delete_stream(name)

    def delete_durable(self, stream: str, name: str) -> None:
        self._admin.delete_durable(stream, name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sid in list(self._subs):
            self._core.unsubscribe(sid)
        self._subs.clear()
        if self._durable is not None:
            runner, twin = self._durable
            try:
                runner.run(twin.close())
            finally:
                runner.stop()
        if self._runner is not None:
            self._runner.stop()


class _ThreadedSubscription(SyncSubscription):
    """A durable subscription of the blocking broker, running on its delivery thread."""

    def __init__(self, runner: LoopThread, sub: Subscription) -> None:
        self._runner = runner
        self._sub = sub
        self.pattern = sub.pattern
        self.queue = sub.queue

    def __repr__(self) -> str:
        return repr(self._sub)

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def unsubscribe(self, timeout: float | None = None) -> None:
        self._runner.run(self._sub.unsubscribe(timeout))


class MemoryBackend:
    """Resolves `memory://[NAME][?impl=python]` for `microstd.broker.open` / `open_sync`."""

    @staticmethod
    def _core(url: ParsedURL, options: dict[str, Any]) -> tuple[Core, dict[str, Any]]:
        opts = memory_options("broker", url, options, _OPTIONS)
        if not opts.name:
            return new_core(opts.impl), opts.values
        core = shared_instance("broker", opts.impl, opts.name, lambda: new_core(opts.impl))
        return core, opts.values

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> MemoryBroker:
        core, values = cls._core(url, options)
        return MemoryBroker(core, **values)

    @classmethod
    def from_url_sync(cls, url: ParsedURL, **options: Any) -> SyncMemoryBroker:
        core, values = cls._core(url, options)
        return SyncMemoryBroker(core, **values)


#: The options a memory broker takes besides `impl` (see `Broker`), with their
#: query-string forms; the error hook is a keyword argument only.
_OPTIONS: dict[str, Convert | None] = {
    "on_error": None,
    "max_pending": int,
    "overflow": str,
    "drain_timeout": float,
}
