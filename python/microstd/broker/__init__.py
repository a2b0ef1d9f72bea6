"""Publish / subscribe with wildcard topics and queue groups.

    broker = microstd.broker.open("memory://")      # redis://..., nats://...
    async with broker:
        sub = await broker.subscribe("orders.*", handler, queue=None)
        await broker.publish("orders.created", {"id": 1})
        await sub.unsubscribe()

Topics are dot-separated tokens; `*` matches one token, `>` one or more
trailing tokens. Third parties add backends through the `microstd.brokers`
entry point group (an object with `from_url(parsed, **options)` returning a
`Broker`, and optionally `from_url_sync`).
"""

from __future__ import annotations

from typing import Any

from microstd._backends import parse_url, resolve
from microstd.broker.base import (
    Broker,
    ErrorHook,
    Handler,
    Message,
    Subscription,
    SyncBroker,
    SyncSubscription,
)

__all__ = [
    "Broker",
    "ErrorHook",
    "Handler",
    "Message",
    "Subscription",
    "SyncBroker",
    "SyncSubscription",
    "open",
    "open_sync",
]

_BUILTINS = {
    "memory": "microstd.broker.memory:MemoryBackend",
    "redis": "microstd.broker.redis:RedisBroker",
    "nats": "microstd.broker.nats:NatsBroker",
}


def _backend(url: str) -> tuple[Any, Any]:
    parsed = parse_url(url)
    return resolve("broker", parsed.scheme, _BUILTINS, "microstd.brokers"), parsed


def open(url: str = "memory://", **options: Any) -> Broker:
    """The async broker `url` names. Options override the URL's query parameters."""
    backend, parsed = _backend(url)
    broker: Broker = backend.from_url(parsed, **options)
    return broker


def open_sync(url: str = "memory://", **options: Any) -> SyncBroker:
    """The blocking broker `url` names: native for `memory://`, else the async
    backend on a private loop thread (handlers then run on that thread)."""
    backend, parsed = _backend(url)
    sync_factory = getattr(backend, "from_url_sync", None)
    if sync_factory is not None:
        broker: SyncBroker = sync_factory(parsed, **options)
        return broker
    from microstd.broker.blocking import BlockingBroker

    return BlockingBroker(backend.from_url(parsed, **options))
