"""Service discovery: register nodes with a TTL, look services up, watch changes.

    reg = microstd.registry.open("memory://default")    # redis://, etcd://, nats://
    async with reg:
        await reg.register(ServiceRecord("greeter", "1.0", [Node("n1", "127.0.0.1:8080")]), ttl=10)
        [svc] = await reg.lookup("greeter")

`microstd.registry.ServiceRecord` is the registry's record of a service; the
runnable service is `microstd.Service`. (The record was called
`microstd.registry.Service`, which clashed with it: that name still works, with a
`DeprecationWarning`.) Third-party backends plug in through the
`microstd.registries` entry point group (an object with
`from_url(parsed, **options)` returning a `Registry`).
"""

from __future__ import annotations

from typing import Any

from microstd._backends import Backends
from microstd.registry.base import Event, EventKind, Node, Registry, ServiceRecord
from microstd.registry.blocking import SyncRegistry

__all__ = [
    "Event",
    "EventKind",
    "Node",
    "Registry",
    "ServiceRecord",
    "SyncRegistry",
    "open",
    "open_sync",
]

_BUILTINS = {
    "memory": "microstd.registry.memory:MemoryRegistry",
    "redis": "microstd.registry.redis:RedisRegistry",
    "rediss": "microstd.registry.redis:RedisRegistry",  # TLS (redis-py's spelling)
    # Redis behind Sentinel (microstd._engines.redis_sentinel), in its usual spellings.
    "redis+sentinel": "microstd.registry.redis:RedisRegistry",
    "rediss+sentinel": "microstd.registry.redis:RedisRegistry",
    "redis-sentinel": "microstd.registry.redis:RedisRegistry",
    "sentinel": "microstd.registry.redis:RedisRegistry",
    # Redis Cluster (microstd._engines.redis_cluster): refused at open, see docs/clusters.md.
    "redis+cluster": "microstd.registry.redis:RedisRegistry",
    "rediss+cluster": "microstd.registry.redis:RedisRegistry",
    "redis-cluster": "microstd.registry.redis:RedisRegistry",
    "etcd": "microstd.registry.etcd:EtcdRegistry",
    "nats": "microstd.registry.nats:NatsRegistry",
    "postgresql": "microstd.registry.postgres:PostgresRegistry",
    "postgres": "microstd.registry.postgres:PostgresRegistry",
}


_FAMILY = Backends(
    "registry", "microstd.registries", _BUILTINS, blocking="microstd.registry.blocking:SyncRegistry"
)


def open(url: str = "memory://", **options: Any) -> Registry:
    """The async registry `url` names. Options override the URL's query parameters."""
    registry: Registry = _FAMILY.open(url, options)
    return registry


def open_sync(url: str = "memory://", **options: Any) -> SyncRegistry:
    """The blocking registry `url` names: the async backend on a private loop thread."""
    registry: SyncRegistry = _FAMILY.open_sync(url, options)
    return registry


def __getattr__(name: str) -> Any:
    if name == "Service":  # the record's old name: microstd.registry.base warns
        from microstd.registry import base

        return base.__getattr__("Service")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
