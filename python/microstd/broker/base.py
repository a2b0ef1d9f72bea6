"""The broker interface: publish / subscribe with wildcard topics and queue groups.

`Broker` is the async interface every backend implements; `SyncBroker` is
its blocking twin with the same method names. Handlers get a `Message`;
they may be plain functions or coroutine functions.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from microstd import _accel, codec
from microstd._lifecycle import AsyncResource, SyncResource
from microstd.broker._durable import AckMode, Start, StreamInfo
from microstd.broker._subjects import validate_subject
from microstd.errors import EncodeError, NotFound, NotSupported

__all__ = [
    "Broker",
    "ErrorHook",
    "Handler",
    "Message",
    "Overflow",
    "Subscription",
    "SyncBroker",
    "SyncSubscription",
    "encode_body",
    "log",
]

log = logging.getLogger("microstd.broker")

OCTET_STREAM = "application/octet-stream"
DEFAULT_CONTENT_TYPE = "application/msgpack"

_CORE_SETTLE = (
    "only messages of a durable subscription (subscribe(..., durable=NAME)) are acked,"
    " nacked or terminated"
)

#: What a slow subscriber's full queue does: make the publisher wait, or drop and count.
Overflow = Literal["block", "drop"]


class Message(metaclass=abc.ABCMeta):  # noqa: B024 (an ABC only so RustMessage can register)
    """One delivered message. `data` is the encoded body; `decode()` decodes it.

    Every subscriber of one publish gets the same object: treat it (and its
    `headers`) as read-only. The Rust memory core delivers its own
    `RustMessage`, registered as a virtual subclass (hence the ABC
    metaclass), so `isinstance(m, Message)` and equality hold on every backend.
    """

    __slots__ = ("content_type", "data", "headers", "topic")

    def __init__(
        self,
        topic: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = OCTET_STREAM,
    ) -> None:
        self.topic = topic
        self.data = data
        self.headers: dict[str, str] = headers if headers is not None else {}
        self.content_type = content_type

    def decode(self, type: Any = None) -> Any:
        """The body decoded with the codec of its content type (bytes stay bytes).

        `type=T` decodes it into a `T` (a dataclass, `list[Item]`...), raising
        `ValidationError` with the path when it does not fit.
        """
        if type is not None:
            from microstd.codec.typed import decode_as

            return decode_as(self.content_type, self.data, type)
        return codec.get(self.content_type).loads(self.data)

    # A core message is delivered at most once and has nothing to settle; the
    # messages of durable subscriptions override these.

    @property
    def id(self) -> str | None:
        """An id stable across redeliveries (durable messages); None on a core message."""
        return None

    @property
    def delivery_count(self) -> int:
        """How many times this message has been delivered, this time included."""
        return 1

    def ack(self) -> None:
        """Done: never deliver again (durable messages; a second settle is a no-op)."""
        raise NotSupported(_CORE_SETTLE)

    def nack(self, delay: float | None = None) -> None:
        """Failed: redeliver after `delay` seconds (None: the subscription's backoff)."""
        raise NotSupported(_CORE_SETTLE)

    def term(self) -> None:
        """Never redeliver; dead-lettered if the subscription has a dead-letter topic."""
        raise NotSupported(_CORE_SETTLE)

    def in_progress(self) -> None:
        """Still working on it: restart the `ack_wait` clock."""
        raise NotSupported(_CORE_SETTLE)

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, content_type={self.content_type!r}, "
            f"size={len(self.data)}, headers={sorted(self.headers)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.topic, self.data, self.headers, self.content_type) == (
            other.topic,
            other.data,
            other.headers,
            other.content_type,
        )

    __hash__ = None  # type: ignore[assignment]


def message_type(handler: Callable[..., object]) -> Any:
    """The type a subscriber handler wants its message decoded into: the
    annotation of its first parameter when typed decoding knows it (a
    dataclass, `list[Item]`...), else None (the handler takes the `Message`)."""
    import inspect
    import typing

    from microstd.rpc.convert import typed_plan

    try:
        params = list(inspect.signature(handler).parameters.values())
        hints = typing.get_type_hints(handler)
    except (TypeError, ValueError, NameError):
        return None
    if not params:
        return None
    wanted = hints.get(params[0].name)
    if wanted is None or (isinstance(wanted, type) and issubclass(wanted, Message)):
        return None
    if typing.get_origin(wanted) is not None and Message in typing.get_args(wanted):
        return None
    return wanted if typed_plan(wanted) is not None else None


if _accel.core is not None:
    # What the Rust core delivers is a `Message` too (see `Message`).
    Message.register(_accel.core.RustMessage)
    Message.register(_accel.core.RustDurableMessage)

Handler = Callable[[Message], "Awaitable[None] | None"]
ErrorHook = Callable[[BaseException, "Subscription | SyncSubscription"], None]


def encode_body(
    body: object, content_type: str | None, headers: Mapping[str, str] | None
) -> tuple[bytes, str, dict[str, str]]:
    """Encode a publish body before anything is sent: `(data, content_type, headers)`.

    Bytes pass through (`application/octet-stream` unless given); anything
    else goes through `microstd.codec` (msgpack by default), whose
    `EncodeError` then stops the publish.
    """
    if type(body) is bytes and content_type is None and not headers:
        return body, OCTET_STREAM, {}  # the common case, kept cheap
    hdrs: dict[str, str] = {}
    if headers:
        for k, v in headers.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("headers must map str to str")
            hdrs[k] = v
    if type(body) is bytes and content_type is None:
        return body, OCTET_STREAM, hdrs
    if isinstance(body, (bytes, bytearray, memoryview)) and content_type is None:
        return bytes(body), OCTET_STREAM, hdrs
    ct = content_type or DEFAULT_CONTENT_TYPE
    c = codec.get(ct)
    if isinstance(body, (bytes, bytearray, memoryview)) and ct in (OCTET_STREAM, "text/plain"):
        return bytes(body), ct, hdrs
    try:
        return c.dumps(body), ct, hdrs
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        # A codec that reports with builtin exceptions still gives callers one type to catch.
        raise EncodeError(f"cannot encode body as {ct}: {exc}", "$") from exc


class Subscription(abc.ABC):
    """A live subscription on the async interface."""

    pattern: str
    queue: str | None

    @property
    @abc.abstractmethod
    def dropped(self) -> int:
        """Messages dropped because this subscriber's queue was full (`overflow="drop"`)."""

    @abc.abstractmethod
    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Stop taking new messages, then handle those already queued or in flight.

        Waits up to `timeout` seconds (default: the broker's `drain_timeout`)
        for them; a handler still running then is cancelled and what is left
        is dropped (logged), or, on a durable subscription, left unacked for
        redelivery. Called from the subscription's own handler it returns at
        once and the queue is still handled. Idempotent.
        """


class SyncSubscription(abc.ABC):
    """A live subscription on the blocking interface."""

    pattern: str
    queue: str | None

    @property
    @abc.abstractmethod
    def dropped(self) -> int: ...

    @abc.abstractmethod
    def unsubscribe(self, timeout: float | None = None) -> None: ...


class Broker(AsyncResource, abc.ABC):
    """Async publish / subscribe. Use as `async with broker:` or `connect()` / `close()`.

    Options every backend takes: `on_error` (called as `hook(exc, subscription)`
    when a handler raises; the error is also logged at WARNING on
    `microstd.broker`), `max_pending` (per-subscription queue bound, default
    10,000), `overflow` (`"block"`: the publisher waits for room, the default;
    `"drop"`: the message is dropped for that subscriber and counted in
    `subscription.dropped`), `drain_timeout` (seconds `close()` waits for
    queued messages to be handled, default 5).
    """

    async def close(self) -> None:
        """Unsubscribe everything, drain in-flight handlers (up to `drain_timeout`), disconnect."""

    @abc.abstractmethod
    def on_error(self, hook: ErrorHook | None) -> None:
        """Set the hook called as `hook(exc, subscription)` when a handler raises."""

    @abc.abstractmethod
    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        ack: AckMode = "auto",
        max_deliver: int | None = None,
        ack_wait: float = 30.0,
        backoff: Sequence[float] | None = None,
        dead_letter: str | None = None,
        start: Start = "new",
        max_inflight: int = 100,
    ) -> Subscription:
        """Deliver messages whose topic matches `pattern` to `handler`, in publish order.

        With `queue`, the subscription joins the group (`pattern`, `queue`):
        each message goes to exactly one member of the group.

        With `durable=NAME` the subscription is durable (at least once): the
        messages it matches are kept in a stream and wait for it while no
        subscriber runs, and every live subscriber of that name shares them
        like a queue group. The other keywords apply to durable
        subscriptions only (see docs/broker.md): `ack` ("auto": returning
        acks, raising nacks; "manual": the handler calls `msg.ack()`),
        `max_deliver` (deliveries before the message is dead-lettered; None
        is unlimited), `ack_wait` (seconds before an unacked delivery is
        redelivered), `backoff` (seconds before redelivering after failed
        delivery 1, 2, ...; the last repeats), `dead_letter` (topic that gets
        messages given up on), `start` ("new", "first", a datetime or a
        stream sequence) and `max_inflight` (unsettled messages one
        subscriber holds). A backend that cannot honour an option raises
        `NotSupported` here.
        """

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish `body` to `topic` (no wildcards). An `EncodeError` publishes nothing.

        If a stream retains `topic`, this returns once the engine has stored it.
        """

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        """Create stream `name` retaining the topics `subjects` match, or update its
        subjects and limits. Limits (None: unlimited) evict the oldest messages first.
        Subjects may not overlap another stream's."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    async def streams(self) -> list[StreamInfo]:
        """Every stream with its durable subscriptions and their counts."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    async def delete_stream(self, name: str) -> None:
        """Delete a stream, its messages and its durables (a missing one is not an error)."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    async def delete_durable(self, stream: str, name: str) -> None:
        """Delete durable `name` of `stream` and its position (a missing one is not an error)."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")


class EncodingBroker(Broker):
    """A broker that encodes a publish here and sends the bytes with `_publish_raw`,
    the path a dead letter takes too (it keeps its content type)."""

    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        validate_subject(topic)
        data, ct, hdrs = encode_body(body, content_type, headers)
        await self._publish_raw(topic, data, hdrs, ct)

    @abc.abstractmethod
    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        """Send an encoded body; return once the engine has it where a stream retains `topic`."""

    async def _added_stream(self, name: str) -> StreamInfo:
        """The info of stream `name`, just added (NotFound if another client deleted it since)."""
        for info in await self.streams():
            if info.name == name:
                return info
        raise NotFound(f"stream {name!r} was deleted as it was added")


class SyncBroker(SyncResource, abc.ABC):
    """The blocking twin of `Broker`: same methods, same semantics, no awaits."""

    def close(self) -> None:
        """Unsubscribe everything and disconnect."""

    @abc.abstractmethod
    def on_error(self, hook: ErrorHook | None) -> None: ...

    @abc.abstractmethod
    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        ack: AckMode = "auto",
        max_deliver: int | None = None,
        ack_wait: float = 30.0,
        backoff: Sequence[float] | None = None,
        dead_letter: str | None = None,
        start: Start = "new",
        max_inflight: int = 100,
    ) -> SyncSubscription:
        """As `Broker.subscribe`; durable subscriptions run on a delivery thread."""

    @abc.abstractmethod
    def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None: ...

    def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        """As `Broker.add_stream`."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    def streams(self) -> list[StreamInfo]:
        """As `Broker.streams`."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    def delete_stream(self, name: str) -> None:
        """As `Broker.delete_stream`."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")

    def delete_durable(self, stream: str, name: str) -> None:
        """As `Broker.delete_durable`."""
        raise NotSupported(f"{type(self).__name__} has no durable streams")
