"""What the network backends share: their subscription type and bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from microstd.broker._delivery import Delivery, Options, report_error
from microstd.broker.base import Broker, ErrorHook, Subscription

__all__ = ["NetworkBroker", "NetworkSubscription", "query_options"]

_NUMBERS: dict[str, type] = {
    "max_pending": int,
    "drain_timeout": float,
    "claim_ttl": float,
    "connect_timeout": float,
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
        self.cancel: Callable[[], Awaitable[None]] | None = None
        self._gone = False

    def __repr__(self) -> str:
        return f"Subscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return self.delivery.dropped if self.delivery is not None else 0

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._broker._opts.hook)  # type: ignore[arg-type]

    async def _detach(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._broker._subs.discard(self)
        if self.cancel is not None:
            await self.cancel()

    async def unsubscribe(self) -> None:
        await self._detach()
        if self.delivery is not None:
            self.delivery.stop()
            await self.delivery.join()


class NetworkBroker(Broker):
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

    async def _close_subscriptions(self) -> None:
        subs = list(self._subs)
        for sub in subs:
            try:
                await sub._detach()
            except Exception as exc:  # the server may already be gone
                report_error(exc, sub, None)
        deliveries = [s.delivery for s in subs if s.delivery is not None]
        if deliveries:
            await asyncio.gather(*(d.drain(self._opts.drain_timeout) for d in deliveries))
