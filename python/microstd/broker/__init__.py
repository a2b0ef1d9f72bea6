"""Publish / subscribe with wildcard topics and queue groups.

    broker = microstd.broker.open("memory://")      # file:///path.db, redis://..., nats://...
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

from microstd._backends import Backends
from microstd.broker._durable import (
    DEAD_LETTER_DELIVERIES,
    DEAD_LETTER_DURABLE,
    DEAD_LETTER_ERROR,
    DEAD_LETTER_ID,
    DEAD_LETTER_TOPIC,
    DurableInfo,
    StreamInfo,
    StreamLimits,
)
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
    "DEAD_LETTER_DELIVERIES",
    "DEAD_LETTER_DURABLE",
    "DEAD_LETTER_ERROR",
    "DEAD_LETTER_ID",
    "DEAD_LETTER_TOPIC",
    "Broker",
    "DurableInfo",
    "ErrorHook",
    "Handler",
    "Message",
    "StreamInfo",
    "StreamLimits",
    "Subscription",
    "SyncBroker",
    "SyncSubscription",
    "open",
    "open_sync",
]

_BUILTINS = {
    "memory": "microstd.broker.memory:MemoryBackend",
    "redis": "microstd.broker.redis:RedisBroker",
    "rediss": "microstd.broker.redis:RedisBroker",  # TLS (redis-py's spelling)
    # Redis behind Sentinel (microstd._engines.redis_sentinel), in its usual spellings.
    "redis+sentinel": "microstd.broker.redis:RedisBroker",
    "rediss+sentinel": "microstd.broker.redis:RedisBroker",
    "redis-sentinel": "microstd.broker.redis:RedisBroker",
    "sentinel": "microstd.broker.redis:RedisBroker",
    # Redis Cluster (microstd._engines.redis_cluster).
    "redis+cluster": "microstd.broker.redis:RedisBroker",
    "rediss+cluster": "microstd.broker.redis:RedisBroker",
    "redis-cluster": "microstd.broker.redis:RedisBroker",
    "nats": "microstd.broker.nats:NatsBroker",
    "file": "microstd.broker.file:FileBroker",
    "amqp": "microstd.broker.amqp:AmqpBroker",
    "amqps": "microstd.broker.amqp:AmqpBroker",
    "postgresql": "microstd.broker.postgres:PostgresBroker",
    "postgres": "microstd.broker.postgres:PostgresBroker",
}


_FAMILY = Backends(
    "broker", "microstd.brokers", _BUILTINS, blocking="microstd.broker.blocking:BlockingBroker"
)


def open(url: str = "memory://", **options: Any) -> Broker:
    """The async broker `url` names. Options override the URL's query parameters."""
    broker: Broker = _FAMILY.open(url, options)
    return broker


def open_sync(url: str = "memory://", **options: Any) -> SyncBroker:
    """The blocking broker `url` names: native for `memory://`, else the async
    backend on a private loop thread (handlers then run on that thread)."""
    broker: SyncBroker = _FAMILY.open_sync(url, options)
    return broker
