"""`amqp://`: RabbitMQ through aio-pika, core and durable.

    broker = microstd.broker.open("amqp://guest:guest@127.0.0.1:5672/")   # ?exchange=microstd

Topics. Every publish goes to one durable topic exchange (`exchange`,
default ``microstd``) with the topic as routing key, persistent, with a
`message_id`, and returns once the server confirmed it (publisher confirms).
Concurrent publishes are on the channel 256 at a time, the others wait their
turn; `timeout` bounds each one's confirm from when it is on the channel.
A pattern binds with `*` as is and `>` as `#`; since AMQP's `#` also
matches zero tokens, received messages are filtered with the design's
matcher, so `a.>` never gets `a`.

Core subscriptions consume without acks from an exclusive, auto-delete
queue of their own; a queue group (pattern, queue) shares one auto-delete
queue, `{exchange}.group.{queue}@{pattern}`, which RabbitMQ serves to its
consumers round robin (fair), each message to one of them.

Durable subscriptions. A durable is a quorum queue,
`{exchange}.durable.{name}`, bound with its pattern; its subscribers are
consumers of that queue, each with `max_inflight` as its prefetch. The
durable's pattern (and stream) is kept in `{exchange}.durable.{name}.meta`,
a one-message queue, so another pattern under the same name is refused.
The delivery count is the queue's `x-delivery-count` plus the deliveries
a message had before a delayed redelivery; `msg.id` is the publisher's
`message_id`. A nack with a delay (the backoff) publishes the message to a
delay queue of that delay (`...durable.{name}.delay.{ms}`, TTL = the delay,
dead-letter exchange: back to the durable's queue) and acks the original.
`ack_wait` is kept by the subscriber: a delivery unacked that long is
rejected back to the queue for another consumer; a subscriber that dies
(or whose connection drops) has its deliveries requeued by the server at
once. Retention limits become the durable queue's arguments
(`x-message-ttl`, `x-max-length`, `x-max-length-bytes`, oldest dropped).

What AMQP cannot offer: a new durable starts with the messages published
after it is created (`start` other than "new" raises `NotSupported`);
streams are not server objects, so a stream's limits apply to durables
created through a broker that declared the stream (`add_stream`) before,
and `streams()` lists the streams and durables this broker knows, with
their ready (`pending`) and consumer counts (other counts are None).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import aio_pika.abc

from microstd._backends import ParsedURL
from microstd._engines import amqp as engine
from microstd.broker._durable import (
    DurableInfo,
    DurableOptions,
    StreamInfo,
    StreamLimits,
    covers,
    declared_stream,
    implicit_stream_name,
    refuse_overlap,
    validate_name,
)
from microstd.broker._durable_delivery import DurableDelivery, DurableMessage, Settler
from microstd.broker._durable_member import Member
from microstd.broker._network import NetworkBroker, NetworkSubscription, query_options
from microstd.broker._subjects import matches, validate_pattern
from microstd.broker.base import OCTET_STREAM, Handler, Message, Subscription, log
from microstd.errors import Closed, InvalidTopic, NotFound, NotSupported

__all__ = ["AmqpBroker", "binding_key"]

#: Headers the server or this backend adds; never shown in `Message.headers`.
_DELIVERIES = "x-microstd-deliveries"
_TOPIC = "x-microstd-topic"
_INTERNAL = frozenset(
    {
        _DELIVERIES,
        _TOPIC,
        "x-delivery-count",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


#: Publishes on the publisher channel at once (the rest wait their turn; see `_publish_raw`).
_PUBLISH_WINDOW = 256

#: What AMQP accepts in exchange and queue names (pamqp's rule); the rest is replaced.
_AMQP_NAME = re.compile(r"[^a-zA-Z0-9\-_.:@#,/+]")


def binding_key(pattern: str) -> str:
    """The AMQP binding key of `pattern`: `>` becomes `#` (a superset: it also matches none)."""
    return ".".join("#" if t == ">" else t for t in pattern.split("."))


def _headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if key in _INTERNAL:
            continue
        out[key] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return out


def _count(raw: Mapping[str, Any] | None) -> int:
    raw = raw or {}
    try:
        before = int(raw.get(_DELIVERIES, 0) or 0)
        requeued = int(raw.get("x-delivery-count", 0) or 0)
    except (TypeError, ValueError):
        return 1
    return before + requeued + 1


class AmqpDurableMessage(DurableMessage):
    """A delivery of a durable subscription on `amqp://`."""

    __slots__ = ("_member", "_timer", "incoming")

    def __init__(self, incoming: aio_pika.abc.AbstractIncomingMessage, member: _Member) -> None:
        raw = incoming.headers
        topic = str(raw.get(_TOPIC) or incoming.routing_key or "")
        msgid = incoming.message_id or f"{member.queue}:{incoming.delivery_tag}"
        assert member.settler is not None
        super().__init__(
            topic,
            incoming.body,
            _headers(raw),
            incoming.content_type or OCTET_STREAM,
            msgid,
            _count(raw),
            member.settler,
        )
        self.incoming = incoming
        self._member = member
        self._timer: asyncio.TimerHandle | None = None

    def _send(self, how: str, delay: float, dead: bool) -> None:
        del dead  # dead letters are counted by nothing on AMQP (no server record)
        self._member.call(self._member.settle, self, how, delay)

    def _progress(self) -> None:
        self._member.call(self._member.watch, self)


class _Member(Member):
    """One subscriber of a durable: its channel, consumer, timers and settles."""

    def __init__(
        self, broker: AmqpBroker, queue: str, pattern: str, options: DurableOptions
    ) -> None:
        super().__init__(options)
        self.broker = broker
        self.queue = queue
        self.pattern = pattern
        self.channel: aio_pika.abc.AbstractRobustChannel | None = None
        self.amqp_queue: aio_pika.abc.AbstractQueue | None = None
        self.tag: str | None = None
        self.settler: Settler | None = None
        self.delivery: DurableDelivery | None = None
        self.delays: set[int] = set()
        #: Set when the server cancelled the consumer (its queue was deleted).
        self.cancelled = False

    def watch(self, message: AmqpDurableMessage) -> None:
        """(Re)start the delivery's ack_wait."""
        if message._timer is not None:
            message._timer.cancel()
        message._timer = self.loop.call_later(self.options.ack_wait, self.expire, message)

    def expire(self, message: AmqpDurableMessage) -> None:
        if message.settled:
            return
        message.settled = True  # a late ack must not touch the delivery tag again
        self.spawn(self._reject(message))

    def settle(self, message: AmqpDurableMessage, how: str, delay: float) -> None:
        if message._timer is not None:
            message._timer.cancel()
        if how in ("ack", "term"):
            self.spawn(self._ack(message))
        elif how == "nack" and delay > 0:
            self.spawn(self._delay(message, delay))
        else:
            self.spawn(self._reject(message))

    async def _ack(self, message: AmqpDurableMessage) -> None:
        # A failed ack leaves the message to be delivered again: at least once.
        with contextlib.suppress(Exception):
            await message.incoming.ack()

    async def _reject(self, message: AmqpDurableMessage) -> None:
        with contextlib.suppress(Exception):
            await message.incoming.nack(requeue=True)

    async def _delay(self, message: AmqpDurableMessage, delay: float) -> None:
        ms = max(1, int(delay * 1000))
        name = f"{self.queue}.delay.{ms}"
        try:
            publisher = await self.broker._publisher()
            if ms not in self.delays:
                with self.broker._errors("declare delay queue"):
                    await publisher.declare_queue(
                        name,
                        durable=True,
                        arguments={
                            "x-message-ttl": ms,
                            "x-dead-letter-exchange": "",
                            "x-dead-letter-routing-key": self.queue,
                            "x-expires": ms + 60_000,
                        },
                    )
                self.delays.add(ms)
            headers: dict[str, Any] = dict(message.headers)
            headers[_DELIVERIES] = message.delivery_count
            headers[_TOPIC] = message.topic
            copy = aio_pika.Message(
                message.data,
                headers=headers,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.id,
            )
            with self.broker._errors("delay a redelivery"):
                await asyncio.wait_for(
                    publisher.default_exchange.publish(copy, routing_key=name),
                    self.broker._endpoint.timeouts.request,
                )
        except Exception as exc:
            log.warning(
                "amqp durable %r: delaying a redelivery failed (%s); requeued", self.queue, exc
            )
            await self._reject(message)
            return
        await self._ack(message)

    async def watch_cancel(self, sub: NetworkSubscription) -> None:
        """End `sub` when the server cancels its consumer (the durable's queue was deleted).

        aio-pika's robust channel takes a server-side cancel for a lost consumer:
        it declares the queue again (durable, so a deleted durable comes back,
        without its meta queue) and consumes from it, and the subscription goes
        on as if nothing happened. Here the cancel ends the subscription instead,
        with `NotFound` through the error hook.
        """
        assert self.channel is not None
        channel = self.channel

        def on_cancel(frame: Any) -> None:
            if self.cancelled or getattr(frame, "consumer_tag", None) != self.tag:
                return
            self.cancelled = True
            # Before anything else runs on the loop: forget the queue and its consumer,
            # so that no recovery (now, or on a reopen or reconnect) declares it again.
            # aio-pika keeps these in private fields; without them there is nothing to undo.
            queues = getattr(channel, "_queues", None)
            if isinstance(queues, dict):
                queues.clear()
            consumers = getattr(self.amqp_queue, "_consumers", None)
            if isinstance(consumers, dict):
                consumers.pop(self.tag, None)
            # Not one of `tasks`: ending the subscription waits for those.
            self.broker._track(self.loop.create_task(self._cancelled(sub)))

        async def hook(*_: Any) -> None:
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(on_cancel)

        await hook()
        channel.reopen_callbacks.add(hook)

    async def _cancelled(self, sub: NetworkSubscription) -> None:
        exc = NotFound(
            f"amqp durable queue {self.queue!r} was deleted on the server (or its"
            " consumer cancelled there): the subscription has ended"
        )
        log.warning("%r: %s", self.broker, exc)
        hook = self.broker._opts.hook
        if hook is not None:
            try:
                hook(exc, sub)
            except Exception:
                log.exception("broker on_error hook raised")
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    async def on_message(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        message = AmqpDurableMessage(incoming, self)
        if not matches(self.pattern, message.topic):
            # Bound as a superset (`>` as `#`): not ours, and never will be.
            await self._ack(message)
            return
        self.watch(message)
        assert self.delivery is not None
        self.delivery.push(message)


class AmqpBroker(NetworkBroker):
    """Async broker on RabbitMQ (see the module docstring)."""

    def __init__(
        self, url: str | engine.AmqpEndpoint, *, exchange: str = "microstd", **options: Any
    ) -> None:
        if isinstance(url, engine.AmqpEndpoint):
            self._endpoint = url
        else:
            self._endpoint, options = engine.AmqpEndpoint.from_url(url, options)
        super().__init__(**options)
        if not isinstance(exchange, str) or not exchange or _AMQP_NAME.search(exchange):
            raise ValueError(
                "exchange must be a non-empty name of letters, digits and -_.:@#,/+,"
                f" got {exchange!r}"
            )
        self._exchange_name = exchange
        self._conn: engine.AmqpConnection | None = None
        self._pub: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consume: aio_pika.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._window = asyncio.Semaphore(_PUBLISH_WINDOW)
        self._streams: dict[str, tuple[list[str], StreamLimits]] = {}
        self._known: dict[str, tuple[str, str]] = {}  # durable -> (stream, pattern)
        self._members: set[_Member] = set()
        self._ending: set[asyncio.Task[None]] = set()  # subscriptions the server ended

    def _track(self, task: asyncio.Task[None]) -> None:
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> AmqpBroker:
        merged = query_options(url.query, options)
        endpoint, rest = engine.AmqpEndpoint.from_url(url.raw, merged, area=("exchange",))
        return cls(endpoint, **rest)

    def __repr__(self) -> str:
        return f"AmqpBroker({self._endpoint.redacted!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"broker {what}")

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        async with self._lock:
            if self._conn is not None:
                return
            conn = await engine.acquire(self._endpoint)
            try:
                pub = await conn.channel(confirms=True)
                with self._errors("declare exchange"):
                    self._exchange = await pub.declare_exchange(
                        self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
            except BaseException:
                await engine.release(conn)
                raise
            self._conn, self._pub = conn, pub

    async def _publisher(self) -> aio_pika.abc.AbstractChannel:
        if self._closed:
            raise Closed("broker is closed")
        if self._pub is None:
            await self.connect()
        assert self._pub is not None
        return self._pub

    async def _consumer_channel(self) -> aio_pika.abc.AbstractChannel:
        await self._publisher()
        if self._consume is None:
            assert self._conn is not None
            self._consume = await self._conn.channel()
        return self._consume

    # --- publishing -------------------------------------------------------------------

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        await self._publisher()
        assert self._exchange is not None
        message = aio_pika.Message(
            data,
            headers=dict(headers) or None,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=uuid.uuid4().hex,
        )
        # aio-pika sends a channel's publishes one at a time (a lock held until each
        # is written out), so in a burst the last waits behind all the others in this
        # process. Only `_PUBLISH_WINDOW` of them at once are on the channel, and
        # `timeout` runs from there: it bounds the server's confirm, not the queue
        # here (with 1,000 in flight on a loaded machine, that queue alone took over
        # the 5 s default, and every publish behind it failed, none of them sent).
        async with self._window:
            with self._errors("publish"):
                # Returns once the server confirmed it (publisher confirms). Not
                # mandatory: a topic nobody subscribes to drops it, as on every backend.
                await asyncio.wait_for(
                    self._exchange.publish(message, routing_key=topic, mandatory=False),
                    self._endpoint.timeouts.request,
                )

    # --- subscribing ----------------------------------------------------------------

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> Subscription:
        validate_pattern(pattern)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        durable_options = DurableOptions.parse(pattern, durable, options)
        if durable_options is not None:
            if durable_options.start != "new":
                raise NotSupported("amqp:// durables start with new messages only (start='new')")
            return await self._subscribe_durable(pattern, handler, queue, durable_options)
        return await self._subscribe_core(pattern, handler, queue)

    def _group_queue(self, pattern: str, queue: str) -> str:
        """`{exchange}.group.{queue}@{pattern}`, in the characters AMQP allows in a name
        (`*` as `+`, `>` as `#`, others as `_`) and with a hash of both, so that
        no two groups share a queue."""
        readable = _AMQP_NAME.sub("_", f"{queue}@{pattern}".replace("*", "+").replace(">", "#"))
        digest = hashlib.sha256(f"{queue}\0{pattern}".encode()).hexdigest()[:12]
        return f"{self._exchange_name}.group.{readable[:120]}.{digest}"

    async def _subscribe_core(
        self, pattern: str, handler: Handler, queue: str | None
    ) -> Subscription:
        channel = await self._consumer_channel()
        sub = NetworkSubscription(self, pattern, queue)
        delivery = self._new_delivery(sub, handler)

        async def on_message(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
            topic = incoming.routing_key or ""
            if matches(pattern, topic):
                delivery.push(
                    Message(
                        topic,
                        incoming.body,
                        _headers(incoming.headers),
                        incoming.content_type or OCTET_STREAM,
                    )
                )

        try:
            with self._errors("subscribe"):
                if queue is None:
                    amqp_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
                else:
                    amqp_queue = await channel.declare_queue(
                        self._group_queue(pattern, queue), auto_delete=True
                    )
                await amqp_queue.bind(self._exchange_name, binding_key(pattern))
                tag = await amqp_queue.consume(on_message, no_ack=True)
        except BaseException:
            delivery.stop()
            raise

        async def cancel(drain: bool) -> None:
            del drain  # what arrived before the cancel is confirmed is already queued
            with self._errors("unsubscribe"):
                await amqp_queue.cancel(tag)

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    def _stream_of(self, pattern: str) -> tuple[str, StreamLimits]:
        for name, (subjects, limits) in self._streams.items():
            if any(covers(s, pattern) for s in subjects):
                return name, limits
        return implicit_stream_name(pattern), StreamLimits()

    def _durable_queue(self, name: str) -> str:
        return f"{self._exchange_name}.durable.{name}"

    async def _claim_name(
        self, channel: aio_pika.abc.AbstractChannel, durable: str, pattern: str, stream: str
    ) -> None:
        """Record (or check) the durable's pattern in its one-message meta queue."""
        meta = await channel.declare_queue(
            self._durable_queue(durable) + ".meta",
            durable=True,
            arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
        )
        for _ in range(3):
            found = await meta.get(no_ack=False, fail=False)
            if found is not None:
                try:
                    recorded = json.loads(found.body)
                finally:
                    await found.nack(requeue=True)
                if recorded.get("pattern") != pattern:
                    raise ValueError(
                        f"durable {durable!r} filters {recorded.get('pattern')!r}, not"
                        f" {pattern!r}: use another durable name, or delete it first"
                    )
                return
            body = json.dumps({"pattern": pattern, "stream": stream}).encode()
            publisher = await self._publisher()
            try:
                await publisher.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=meta.name,
                )
                return
            except aio_pika.exceptions.DeliveryError:
                continue  # another process recorded one first: read it
        raise ValueError(f"durable {durable!r}: could not record its pattern")

    async def _subscribe_durable(
        self, pattern: str, handler: Handler, queue: str | None, options: DurableOptions
    ) -> Subscription:
        await self._publisher()
        assert self._conn is not None
        stream, limits = self._stream_of(pattern)
        name = self._durable_queue(options.durable)
        member = _Member(self, name, pattern, options)
        channel = await self._conn.channel()
        member.channel = channel
        sub = NetworkSubscription(self, pattern, queue)
        try:
            with self._errors("subscribe"):
                await self._claim_name(channel, options.durable, pattern, stream)
                await channel.set_qos(prefetch_count=options.max_inflight)
                arguments: dict[str, Any] = {"x-queue-type": "quorum"}
                if limits.max_age is not None:
                    arguments["x-message-ttl"] = max(1, int(limits.max_age * 1000))
                if limits.max_count is not None:
                    arguments["x-max-length"] = limits.max_count
                if limits.max_bytes is not None:
                    arguments["x-max-length-bytes"] = limits.max_bytes
                try:
                    amqp_queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    # The passive declare closed the channel: a new one creates it. The
                    # old one is closed for good (aio-pika would reopen it, and with it
                    # declare the meta queue again after a reconnect, for ever).
                    with contextlib.suppress(Exception):
                        await channel.close()
                    channel = await self._conn.channel()
                    member.channel = channel
                    await channel.set_qos(prefetch_count=options.max_inflight)
                    amqp_queue = await channel.declare_queue(
                        name, durable=True, arguments=arguments
                    )
                await amqp_queue.bind(self._exchange_name, binding_key(pattern))
                member.amqp_queue = amqp_queue
                settler = Settler(options, self._publish_raw, asyncio.get_running_loop())
                member.settler = settler
                delivery = DurableDelivery(
                    handler, settler=settler, report=sub.report, impl="python"
                )
                member.delivery = delivery
                sub.delivery = delivery
                member.tag = await amqp_queue.consume(member.on_message, no_ack=False)
                await member.watch_cancel(sub)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            if member.delivery is not None:
                member.delivery.stop()
            raise
        self._known[options.durable] = (stream, pattern)
        self._members.add(member)

        async def cancel(drain: bool) -> None:
            del drain
            if member.cancelled:
                return  # the server cancelled it already
            with contextlib.suppress(Exception):
                await amqp_queue.cancel(member.tag or "")

        async def finish() -> None:
            # After the drain: what is left goes back to the queue with the channel.
            if member.tasks:
                await asyncio.gather(*list(member.tasks), return_exceptions=True)
            await settler.flush()
            self._members.discard(member)
            with contextlib.suppress(Exception):
                await channel.close()

        sub.cancel = cancel
        sub.finish = finish
        self._subs.add(sub)
        return sub

    # --- streams --------------------------------------------------------------------------

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        patterns, limits = declared_stream(name, subjects, max_age, max_count, max_bytes)
        refuse_overlap(name, patterns, ((n, s) for n, (s, _) in self._streams.items()))
        self._streams[name] = (patterns, limits)
        return await self._added_stream(name)

    async def streams(self) -> list[StreamInfo]:
        channel_owner = await self._publisher()
        del channel_owner
        assert self._conn is not None
        names = dict.fromkeys(self._streams)
        for stream, _ in self._known.values():
            names.setdefault(stream)
        out = []
        for stream in names:
            subjects, limits = self._streams.get(stream, ([], StreamLimits()))
            durables = []
            for durable, (owner, pattern) in sorted(self._known.items()):
                if owner != stream:
                    continue
                pending = consumers = None
                channel = await self._conn.channel()
                try:
                    queue = await channel.declare_queue(self._durable_queue(durable), passive=True)
                    pending = queue.declaration_result.message_count
                    consumers = queue.declaration_result.consumer_count
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    continue
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
                durables.append(
                    DurableInfo(stream, durable, pattern, pending=pending, consumers=consumers)
                )
            if not subjects:
                subjects = [p for s, p in self._known.values() if s == stream][:1]
            out.append(StreamInfo(stream, tuple(subjects), limits, durables=tuple(durables)))
        return out

    async def delete_stream(self, name: str) -> None:
        validate_name(name, "stream")
        self._streams.pop(name, None)
        for durable, (stream, _) in list(self._known.items()):
            if stream == name:
                await self.delete_durable(name, durable)

    async def delete_durable(self, stream: str, name: str) -> None:
        validate_name(stream, "stream")
        validate_name(name, "durable")
        await self._publisher()
        assert self._conn is not None
        channel = await self._conn.channel()
        try:
            with self._errors("delete durable"):
                for queue in (self._durable_queue(name), self._durable_queue(name) + ".meta"):
                    await channel.queue_delete(queue)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._known.pop(name, None)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._ending:
                await asyncio.gather(*list(self._ending), return_exceptions=True)
            await self._close_subscriptions()
        finally:
            self._closed = True
            for channel in (self._consume, self._pub):
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await channel.close()
            conn, self._conn = self._conn, None
            if conn is not None:
                await engine.release(conn)
