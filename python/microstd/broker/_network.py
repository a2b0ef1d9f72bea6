"""What the network backends share: their subscription type and bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from microstd.broker._delivery import Delivery, Options, report_error
from microstd.broker.base import EncodingBroker, ErrorHook, Subscription, log
from microstd.errors import ConnectionFailed, ConnectionRestored

__all__ = [
    "ENVELOPE_VERSION",
    "MalformedEnvelope",
    "NetworkBroker",
    "NetworkSubscription",
    "parse_envelope",
    "query_options",
]

ENVELOPE_VERSION = 1
# Anyone who can publish on the server can send an envelope, so nothing in it is
# trusted. The id becomes part of a Redis claim key: keep it short.
_MAX_ID_CHARS = 128


class MalformedEnvelope(ValueError):
    """A received message is not an envelope a microstd broker wrote. The
    message says which part is wrong, never what the bytes were."""


def parse_envelope(data: object) -> tuple[str, dict[str, str], str, bytes]:
    """`(id, headers, content_type, body)` of a msgpack envelope
    `[1, id, headers, content_type, body]`; `MalformedEnvelope` for any other shape."""
    from microstd import codec
    from microstd.errors import DecodeError

    if not isinstance(data, bytes):
        raise MalformedEnvelope(f"payload is {type(data).__name__}, not bytes")
    try:
        envelope = codec.msgpack.loads(data)
    except DecodeError as exc:
        raise MalformedEnvelope(f"not msgpack (at byte {exc.offset})") from None
    if not isinstance(envelope, list) or len(envelope) != 5:
        raise MalformedEnvelope("not a 5-item array")
    version, msgid, headers, content_type, body = envelope
    if version != ENVELOPE_VERSION or isinstance(version, bool):
        raise MalformedEnvelope("unknown envelope version")
    if not isinstance(msgid, str) or not 0 < len(msgid) <= _MAX_ID_CHARS:
        raise MalformedEnvelope("the message id is not a short str")
    if not isinstance(headers, dict):
        raise MalformedEnvelope("the headers are not a map")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise MalformedEnvelope("a header name or value is not a str")
    if not isinstance(content_type, str):
        raise MalformedEnvelope("the content type is not a str")
    if not isinstance(body, bytes):
        raise MalformedEnvelope("the body is not bytes")
    return msgid, headers, content_type, body


_NUMBERS: dict[str, type] = {
    "max_pending": int,
    "drain_timeout": float,
    "claim_ttl": float,
    "group_heartbeat": float,
    "group_fallback": float,
    "connect_timeout": float,
    "timeout": float,
    "socket_timeout": float,
    "ping_interval": float,
    "max_reconnect_attempts": int,
    "reconnect_time_wait": float,
}


def query_options(query: dict[str, str], options: dict[str, Any]) -> dict[str, Any]:
    """The URL's query options, numbers converted, overridden by keyword `options`."""
    merged: dict[str, Any] = {}
    for key, value in query.items():
        try:
            merged[key] = _NUMBERS[key](value) if key in _NUMBERS else value
        except ValueError as exc:
            raise ValueError(f"URL option {key}={value!r} is not a number") from exc
    merged.update(options)
    return merged


class NetworkSubscription(Subscription):
    """A subscription whose messages arrive from a server into a `Delivery`."""

    def __init__(self, broker: NetworkBroker, pattern: str, queue: str | None) -> None:
        self._broker = broker
        self.pattern = pattern
        self.queue = queue
        self.delivery: Delivery | None = None
        #: Tells the server (or the shared reader) to stop sending; set by the backend.
        #: `cancel(drain)`: with `drain`, messages the client library already
        #: received are first handed to the delivery (a close must not lose them).
        self.cancel: Callable[[bool], Awaitable[None]] | None = None
        #: Runs after the drain (a durable subscription hands back what is left).
        self.finish: Callable[[], Awaitable[None]] | None = None
        self._gone = False

    def __repr__(self) -> str:
        return f"Subscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return self.delivery.dropped if self.delivery is not None else 0

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._broker._opts.hook)  # type: ignore[arg-type]

    async def _detach(self, drain: bool = False) -> None:
        if self._gone:
            return
        self._gone = True
        self._broker._subs.discard(self)
        if self.cancel is not None:
            await self.cancel(drain)

    async def unsubscribe(self, timeout: float | None = None) -> None:
        if self._gone:
            return
        if self.delivery is not None:
            self.delivery.draining = True
            self.delivery.wake_publishers()
        await self._detach(drain=True)
        if self.delivery is not None:
            await self.delivery.drain(
                self._broker._opts.drain_timeout if timeout is None else timeout
            )
        if self.finish is not None:
            await self.finish()


class NetworkBroker(EncodingBroker):
    """Options handling and orderly close for the network backends."""

    def __init__(self, **options: Any) -> None:
        self._opts = Options(**options)
        self._subs: set[NetworkSubscription] = set()
        self._closed = False

    def on_error(self, hook: ErrorHook | None) -> None:
        self._opts.hook = hook

    def _new_delivery(self, sub: NetworkSubscription, handler: Any, gate: Any = None) -> Delivery:
        delivery = Delivery(
            handler,
            max_pending=self._opts.max_pending,
            overflow=self._opts.overflow,
            report=sub.report,
            gate=gate,
        )
        sub.delivery = delivery
        return delivery

    def _connection_event(self, exc: ConnectionFailed | ConnectionRestored) -> None:
        """Log a lost (WARNING) or restored (INFO) connection once, and pass `exc` to
        the `on_error` hook with each subscription it concerns."""
        if isinstance(exc, ConnectionRestored):
            log.info("%r: %s", self, exc)
        else:
            log.warning("%r: %s", self, exc)
        hook = self._opts.hook
        if hook is None:
            return
        for sub in list(self._subs):
            try:
                hook(exc, sub)
            except Exception:
                log.exception("broker on_error hook raised")

    async def _close_subscriptions(self) -> None:
        subs = list(self._subs)
        for sub in subs:
            try:
                await sub._detach(drain=True)
            except Exception as exc:  # the server may already be gone
                report_error(exc, sub, None)
        deliveries = [s.delivery for s in subs if s.delivery is not None]
        if deliveries:
            await asyncio.gather(*(d.drain(self._opts.drain_timeout) for d in deliveries))
        for sub in subs:
            if sub.finish is not None:
                try:
                    await sub.finish()
                except Exception as exc:  # the server may already be gone
                    report_error(exc, sub, None)
