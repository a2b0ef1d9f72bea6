"""The broker interface: publish / subscribe with wildcard topics and queue groups.

`Broker` is the async interface every backend implements; `SyncBroker` is
its blocking twin with the same method names. Handlers get a `Message`;
they may be plain functions or coroutine functions.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from microstd import codec
from microstd._lifecycle import AsyncResource, SyncResource
from microstd.errors import EncodeError

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
        self, pattern: str, handler: Handler, queue: str | None = None
    ) -> Subscription:
        """Deliver messages whose topic matches `pattern` to `handler`, in publish order.

        With `queue`, the subscription joins the group (`pattern`, `queue`):
        each message goes to exactly one member of the group.
        """

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish `body` to `topic` (no wildcards). An `EncodeError` publishes nothing."""


class SyncBroker(SyncResource, abc.ABC):
    """The blocking twin of `Broker`: same methods, same semantics, no awaits."""

    def close(self) -> None:
        """Unsubscribe everything and disconnect."""

    @abc.abstractmethod
    def on_error(self, hook: ErrorHook | None) -> None: ...

    @abc.abstractmethod
    def subscribe(
        self, pattern: str, handler: Handler, queue: str | None = None
    ) -> SyncSubscription: ...

    @abc.abstractmethod
    def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None: ...
