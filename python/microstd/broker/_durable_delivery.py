"""Delivery for durable subscriptions: settling, redelivery policy and dead letters.

Every backend's durable subscriptions go through this module, so the rules
live in one place:

- `DurableDelivery` runs the handler over the messages the engine hands
  this subscriber (in order, one at a time, like a core `Delivery`). In
  `ack="auto"` mode a handler that returns acks its message and one that
  raises nacks it (with the error, for the dead-letter header). A message
  delivered more than `max_deliver` times (its last delivery's `ack_wait`
  ran out, or its subscriber died) is dead-lettered without reaching the
  handler. Messages it will never start (a stop, a drain out of time) are
  released back to the engine for redelivery, uncounted where the engine
  allows.
- `Settler` turns `nack()` and `term()` into engine operations: the
  backoff schedule for a nack without a delay, and the dead-letter topic
  after the last allowed delivery (or a `term()`).

The engine's side is the message: each backend's durable message has
`settle(how, delay, dead)` with `how` one of "nack", "term", "release".

Observability hooks belong here: `DurableDelivery._deliver` sees every
delivery (a `delivery_count` above 1 is a redelivery) and
`Settler.dead_letter` every dead letter.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from microstd.broker._delivery import Delivery, _resume, run_outcomes
from microstd.broker._durable import (
    DEAD_LETTER_DELIVERIES,
    DEAD_LETTER_DURABLE,
    DEAD_LETTER_ERROR,
    DEAD_LETTER_ID,
    DEAD_LETTER_TOPIC,
    DurableOptions,
    error_text,
)
from microstd.broker.base import Handler, Message, log
from microstd.observe.instrument import count_dead_letter

__all__ = ["DeadLetterPublish", "DurableDelivery", "DurableMessage", "Settleable", "Settler"]

#: How a settler publishes a dead letter: `(topic, data, headers, content_type)`,
#: returning once the engine has it.
DeadLetterPublish = Callable[[str, bytes, dict[str, str], str], Awaitable[None]]

#: Error text of a message whose last delivery was never acked.
NO_ACK = "no ack within ack_wait"

#: How many messages whose dead-letter publish failed a settler remembers.
#: Past that the oldest is forgotten: if it comes back it reaches the handler
#: again (as a redelivery), so at worst a handler runs once more than it
#: should; no message is lost and at-least-once still holds.
MAX_UNSENT_DEAD_LETTERS = 4096


class Settleable(Protocol):
    """What a durable message offers its settler."""

    topic: str
    data: bytes
    headers: dict[str, str]
    content_type: str
    settled: bool

    @property
    def id(self) -> str: ...
    @property
    def delivery_count(self) -> int: ...
    def ack(self) -> None: ...
    def settle(self, how: str, delay: float = 0.0, dead: bool = False) -> None: ...


class DurableMessage(Message):
    """The part of a durable delivery every engine shares: its id, its delivery
    count, and `ack` / `nack` / `term` / `in_progress` going through the
    subscription's `Settler` exactly once.

    A backend's message supplies the engine side: `_send(how, delay, dead)`
    settles it on the engine (called at most once), `_progress()` extends its
    ack_wait.
    """

    __slots__ = ("_count", "_id", "settled", "settler")

    def __init__(
        self,
        topic: str,
        data: bytes,
        headers: dict[str, str],
        content_type: str,
        msgid: str,
        count: int,
        settler: Settler,
    ) -> None:
        super().__init__(topic, data, headers, content_type)
        self._id = msgid
        self._count = count
        self.settled = False
        self.settler = settler

    @property
    def id(self) -> str:
        return self._id

    @property
    def delivery_count(self) -> int:
        return self._count

    def ack(self) -> None:
        self.settle("ack")

    def nack(self, delay: float | None = None) -> None:
        if not self.settled:
            self.settler.nack(self, delay, "nacked")

    def term(self) -> None:
        if not self.settled:
            self.settler.term(self, "terminated")

    def in_progress(self) -> None:
        if not self.settled:
            self._progress()

    def settle(self, how: str, delay: float = 0.0, dead: bool = False) -> None:
        if self.settled:
            return
        self.settled = True
        self._send(how, delay, dead)

    def _send(self, how: str, delay: float, dead: bool) -> None:
        raise NotImplementedError

    def _progress(self) -> None:
        raise NotImplementedError


class Settler:
    """The redelivery and dead-letter policy of one durable subscription."""

    def __init__(
        self,
        options: DurableOptions,
        publish: DeadLetterPublish,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.options = options
        self._publish = publish
        self._loop = loop
        self._thread = threading.get_ident()
        self._tasks: set[asyncio.Task[None]] = set()
        # Ids of messages given up on whose dead-letter publish failed, with
        # their error text: when one comes back it is dead-lettered again
        # without reaching the handler (see MAX_UNSENT_DEAD_LETTERS). Only
        # touched on the loop's thread.
        self._unsent: OrderedDict[str, str] = OrderedDict()

    def unsent(self, message: Settleable) -> str | None:
        """The error text of `message` if its dead-letter publish failed before, else None."""
        if not self._unsent:
            return None
        return self._unsent.get(message.id)

    @property
    def has_unsent(self) -> bool:
        """Whether some message is waiting for its dead-letter publish to be retried."""
        return bool(self._unsent)

    def nack(self, message: Settleable, delay: float | None, error: BaseException | str) -> None:
        """Redeliver after `delay` (None: the backoff schedule), or dead-letter the last try."""
        if message.settled:
            return
        count = message.delivery_count
        limit = self.options.max_deliver
        if limit is not None and count >= limit:
            self.dead_letter(message, error)
            return
        if delay is None:
            delay = self.options.delay_after(count)
        elif isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"nack delay must be seconds >= 0, got {delay!r}")
        message.settle("nack", float(delay))

    def term(self, message: Settleable, error: BaseException | str) -> None:
        """Never redeliver: dead-lettered if the subscription has a dead-letter topic."""
        if message.settled:
            return
        if self.options.dead_letter is not None:
            self.dead_letter(message, error)
        else:
            message.settle("term")

    def dead_letter(self, message: Settleable, error: BaseException | str) -> None:
        """Give up on `message`: publish it to the dead-letter topic (if any), then drop it.

        If the publish fails the message is put back (its in-flight slot
        freed at once) and remembered: delivered again after `ack_wait`, it
        goes to the dead-letter publish once more without running the
        handler (`DurableDelivery._deliver`).
        """
        if message.settled:
            return
        topic = self.options.dead_letter
        text = error_text(error)
        if topic is None:
            count_dead_letter(self.options.durable)
            log.warning(
                "durable %r: message %s dropped after %d deliveries (%s); set dead_letter= to keep"
                " such messages",
                self.options.durable,
                message.id,
                message.delivery_count,
                text,
            )
            message.settle("term", dead=True)
            return
        message.settled = True  # no second settle while the publish is under way
        headers = {
            **message.headers,
            DEAD_LETTER_TOPIC: message.topic,
            DEAD_LETTER_ERROR: text,
            DEAD_LETTER_DELIVERIES: str(message.delivery_count),
            DEAD_LETTER_DURABLE: self.options.durable,
            DEAD_LETTER_ID: message.id,
        }
        self._spawn(self._send_dead_letter(message, topic, headers, text))

    async def _send_dead_letter(
        self, message: Settleable, topic: str, headers: dict[str, str], text: str
    ) -> None:
        published = False
        try:
            await self._publish(topic, message.data, headers, message.content_type)
            published = True
            self._unsent.pop(message.id, None)
        except Exception as exc:
            self._unsent[message.id] = text
            self._unsent.move_to_end(message.id)
            while len(self._unsent) > MAX_UNSENT_DEAD_LETTERS:
                self._unsent.popitem(last=False)
            log.warning(
                "durable %r: publishing message %s to dead-letter topic %r failed (it is"
                " delivered again after ack_wait, %gs, and tried once more): %s",
                self.options.durable,
                message.id,
                topic,
                self.options.ack_wait,
                exc,
            )
        finally:
            # Whatever happened (even a cancel), settle: an unsettled message
            # would hold one of the subscriber's `max_inflight` slots for good
            # on engines that count them here (redis, nats, amqp).
            message.settled = False
            try:
                if published:
                    count_dead_letter(self.options.durable)
                    message.settle("term", dead=True)
                else:
                    message.settle("nack", self.options.ack_wait)
            except Exception as exc:  # the engine is closing: redelivered by it
                log.debug(
                    "durable %r: settling %s failed: %s", self.options.durable, message.id, exc
                )

    def _spawn(self, coro: Any) -> None:
        if threading.get_ident() == self._thread:
            task = self._loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            # A sync handler on a worker thread settled its message.
            asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def flush(self) -> None:
        """Wait for dead letters still being published."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class DurableDelivery(Delivery):
    """A `Delivery` for one subscriber of a durable subscription (see the module docstring).

    `tick()`, when given, is the engine's timer step: called whenever the
    subscriber is idle, it returns the seconds until it should be called
    again (None: only when something is pushed).
    """

    LEFT_BEHIND = "released for redelivery"

    __slots__ = ("_auto", "_limit", "settler", "tick")

    def __init__(
        self,
        handler: Handler,
        *,
        settler: Settler,
        report: Callable[[BaseException], None],
        impl: str = "rust",
        tick: Callable[[], float | None] | None = None,
    ) -> None:
        options = settler.options
        # The engine never hands a subscriber more than max_inflight unsettled
        # messages, so the queue stays within that bound.
        super().__init__(
            handler,
            max_pending=options.max_inflight + 1,
            overflow="block",
            report=report,
            impl=impl,
        )
        self.settler = settler
        self.tick = tick
        self._auto = options.ack == "auto"
        self._limit = options.max_deliver or 0

    async def _idle(self, wake: asyncio.Event) -> None:
        wait = self.tick() if self.tick is not None else None
        if wake.is_set():
            wake.clear()
            return
        if wait is None:
            await wake.wait()
        else:
            try:
                await asyncio.wait_for(wake.wait(), max(wait, 0.001))
            except asyncio.TimeoutError:
                return
        wake.clear()

    def _abandon(self, messages: Sequence[Message]) -> None:
        for message in messages:
            settle = getattr(message, "settle", None)
            if settle is not None:
                settle("release")

    def _deliver(self, message: Any) -> bool:
        """Before the handler: False if the message is dead-lettered instead."""
        unsent = self.settler.unsent(message)
        if unsent is not None:
            # Given up on already (a term, a last nack), but its dead-letter
            # publish failed: try that again (with the first error), never the
            # handler.
            self.settler.dead_letter(message, unsent)
            return False
        if self._limit and message.delivery_count > self._limit:
            self.settler.dead_letter(message, NO_ACK)
            return False
        return True

    def _after(self, message: Any, error: BaseException | None) -> None:
        """After the handler: auto-ack on return, nack on a raise (both modes)."""
        if error is not None:
            self.report(error)
            if not message.settled:
                self.settler.nack(message, None, error)
        elif self._auto and not message.settled:
            message.ack()

    async def _run_batch(self, batch: list[Message]) -> bool:
        handler = self.handler
        started = 0
        try:
            for message in batch:
                if self._stopped:
                    return False
                started += 1
                if not self._deliver(message):
                    continue
                error: BaseException | None = None
                try:
                    result = handler(message)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    error = exc
                self._after(message, error)
            await _take_turns()
            return True
        finally:
            if started < len(batch):
                self._abandon(batch[started:])

    async def _run_native(self, run: Callable[..., Any], batch: list[Message]) -> bool:
        # `RustQueue.run` acks natively after a sync handler returns (auto mode)
        # and stops at a message past max_deliver (RUN_OVER_DELIVERED). It does
        # not know the settler's unsent dead letters, so while there are any
        # the Python loop (which checks each message in `_deliver`) runs.
        if self.settler.has_unsent:
            return await self._run_batch(batch)
        handler = self.handler
        done, raised, _await, stopped, over_delivered = run_outcomes()
        i = 0
        n = len(batch)
        started = 0
        try:
            while i < n:
                i, outcome, obj = run(handler, batch, i, self._auto, self._limit)
                if outcome == done:
                    started = n
                    await _take_turns()
                    return True
                if outcome == stopped:
                    started = i
                    return False
                started = i + 1
                message = batch[i]
                if outcome == over_delivered:
                    self._deliver(message)
                elif outcome == raised:
                    self._after(message, obj)
                else:
                    error: BaseException | None = None
                    try:
                        if type(obj) is tuple:
                            await _resume(*obj)
                        elif inspect.isawaitable(obj):
                            await obj
                    except Exception as exc:
                        error = exc
                    self._after(message, error)
                i += 1
            await _take_turns()
            return True
        finally:
            if started < n:
                self._abandon(batch[started:])


async def _take_turns() -> None:
    """Let the other subscribers of this loop run between batches.

    Each ack frees room that the engine fills at once, so a subscriber with
    fast handlers would otherwise refill its own queue and keep the loop
    while the other members of its durable wait with full queues.
    """
    await asyncio.sleep(0)
