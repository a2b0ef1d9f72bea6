"""Durable subscriptions of `memory://`: the glue between the broker and its stream core.

The stream core (`RustStreams`, or the twin `PythonStreams`) belongs to the
routing core, so every handle on a shared `memory://NAME` sees the same
streams. A durable subscriber is a member of its consumer in the core,
which pushes deliveries into the subscriber's `DurableDelivery` queue; the
delivery's idle loop drives the consumer's timers (`tick`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from microstd.broker._durable import (
    DurableInfo,
    DurableOptions,
    StreamInfo,
    StreamLimits,
    covers,
    declared_stream,
    implicit_stream_name,
    validate_name,
)
from microstd.broker._durable_delivery import DeadLetterPublish, DurableDelivery, Settler
from microstd.broker._subjects import validate_pattern
from microstd.broker.base import Handler, Subscription, log
from microstd.errors import InvalidTopic

__all__ = ["DurableMemorySubscription", "StreamAdmin", "subscribe_durable"]


class StreamAdmin:
    """Stream management over one stream core, shared by both memory surfaces."""

    def __init__(self, streams: Any) -> None:
        self.core = streams

    def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        max_age: float | None,
        max_count: int | None,
        max_bytes: int | None,
    ) -> StreamInfo:
        patterns, limits = declared_stream(name, subjects, max_age, max_count, max_bytes)
        self.core.add_stream(name, patterns, limits.max_age, limits.max_count, limits.max_bytes)
        return self.info(name)

    def info(self, name: str) -> StreamInfo:
        for info in self.streams():
            if info.name == name:
                return info
        from microstd.errors import NotFound

        raise NotFound(f"no stream {name!r}")

    def streams(self) -> list[StreamInfo]:
        return [to_info(raw) for raw in self.core.info()]

    def delete_stream(self, name: str) -> None:
        self.core.delete_stream(validate_name(name, "stream"))

    def delete_durable(self, stream: str, name: str) -> None:
        self.core.delete_consumer(validate_name(stream, "stream"), validate_name(name, "durable"))

    def stream_for(self, pattern: str) -> str:
        """The stream covering `pattern`, created (unlimited) if there is none."""
        found = self.core.stream_for(pattern)
        if found is not None:
            return str(found)
        name = implicit_stream_name(pattern)
        try:
            self.core.add_stream(name, [pattern], None, None, None)
        except ValueError as exc:
            raise ValueError(
                f"no stream covers {pattern!r} and one of its own would overlap another ({exc}):"
                " add a stream whose subjects cover it (broker.add_stream)"
            ) from None
        return name


def to_info(raw: dict[str, Any]) -> StreamInfo:
    """A `StreamInfo` from the plain dict the stream cores report."""
    return StreamInfo(
        name=raw["name"],
        subjects=tuple(raw["subjects"]),
        limits=StreamLimits(raw["max_age"], raw["max_count"], raw["max_bytes"]),
        messages=raw["messages"],
        bytes=raw["bytes"],
        first_sequence=raw["first_sequence"],
        last_sequence=raw["last_sequence"],
        durables=tuple(
            DurableInfo(
                stream=raw["name"],
                name=d["name"],
                pattern=d["pattern"],
                pending=d["pending"],
                unacked=d["unacked"],
                redelivered=d["redelivered"],
                dead_lettered=d["dead_lettered"],
                consumers=d["consumers"],
            )
            for d in raw["durables"]
        ),
    )


class DurableMemorySubscription(Subscription):
    """One subscriber of a durable on the memory core."""

    __slots__ = ("_broker", "_done", "delivery", "durable", "mid", "pattern", "queue", "stream")

    def __init__(self, broker: Any, pattern: str, queue: str | None, stream: str, durable: str):
        self._broker = broker
        self.pattern = pattern
        self.queue = queue
        self.stream = stream
        self.durable = durable
        self.mid = 0
        self.delivery: DurableDelivery | None = None
        self._done = False

    def __repr__(self) -> str:
        return (
            f"Subscription(pattern={self.pattern!r}, durable={self.durable!r},"
            f" stream={self.stream!r})"
        )

    @property
    def dropped(self) -> int:
        return 0  # the core never hands a subscriber more than it has room for

    def report(self, exc: BaseException) -> None:
        from microstd.broker._delivery import report_error

        report_error(exc, self, self._broker._opts.hook)

    async def unsubscribe(self, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        core = self._broker._core.streams
        self._broker._durables.discard(self)
        # No new deliveries; handle what this subscriber holds, then hand back the rest.
        core.pause(self.mid)
        delivery = self.delivery
        if delivery is not None:
            await delivery.drain(self._broker._opts.drain_timeout if timeout is None else timeout)
            await delivery.settler.flush()
        core.detach(self.mid)


async def subscribe_durable(
    broker: Any,
    pattern: str,
    handler: Handler,
    queue: str | None,
    options: DurableOptions,
    publish: DeadLetterPublish,
) -> DurableMemorySubscription:
    """Subscribe `handler` as a member of durable `options.durable` on `broker`'s core."""
    validate_pattern(pattern)
    if queue is not None and (not queue or any(c.isspace() for c in queue)):
        raise InvalidTopic("queue names must be non-empty and without whitespace")
    admin: StreamAdmin = broker._admin
    stream = admin.stream_for(pattern)
    kind, when, seq = options.start_fields()
    core = admin.core
    cid = core.consumer(stream, options.durable, pattern, options.ack_wait, kind, when, seq)
    sub = DurableMemorySubscription(broker, pattern, queue, stream, options.durable)
    settler = Settler(options, publish, asyncio.get_running_loop())
    delivery = DurableDelivery(
        handler,
        settler=settler,
        report=sub.report,
        impl=broker._impl,
        tick=lambda: core.tick(cid),
    )
    sub.delivery = delivery
    try:
        sub.mid = core.attach(cid, delivery.target, options.max_inflight, settler)
    except BaseException:
        delivery.stop()
        await delivery.join()
        raise
    log.debug("durable %r subscribed to %r on stream %r", options.durable, pattern, stream)
    return sub


def covering(streams: list[StreamInfo], pattern: str) -> StreamInfo | None:
    """The stream among `streams` whose subjects cover `pattern`."""
    for info in streams:
        if any(covers(s, pattern) for s in info.subjects):
            return info
    return None
