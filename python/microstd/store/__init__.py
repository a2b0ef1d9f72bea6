"""Key-value records with TTLs, revisions, conditional writes and watch.

    store = microstd.store.open("memory://")       # file://, redis://, nats://, s3://, postgresql://
    async with store:
        rev = await store.write("user/1", {"name": "a"}, ttl=60)
        rec = await store.read("user/1")

Backends are chosen by URL scheme; third parties add theirs through the
`microstd.stores` entry point group (an object with `from_url(parsed, **options)`
returning a `Store`, and optionally `from_url_sync`).
"""

from __future__ import annotations

from typing import Any

from microstd._backends import Backends
from microstd.store.base import Event, Record, Revision, Store, SyncStore

__all__ = ["Event", "Record", "Revision", "Store", "SyncStore", "open", "open_sync"]

_BUILTINS = {
    "memory": "microstd.store.memory:MemoryBackend",
    "file": "microstd.store.file:FileStore",
    "redis": "microstd.store.redis:RedisStore",
    "rediss": "microstd.store.redis:RedisStore",  # TLS (redis-py's spelling)
    # Redis behind Sentinel (microstd._engines.redis_sentinel), in its usual spellings.
    "redis+sentinel": "microstd.store.redis:RedisStore",
    "rediss+sentinel": "microstd.store.redis:RedisStore",
    "redis-sentinel": "microstd.store.redis:RedisStore",
    "sentinel": "microstd.store.redis:RedisStore",
    # Redis Cluster (microstd._engines.redis_cluster).
    "redis+cluster": "microstd.store.redis:RedisStore",
    "rediss+cluster": "microstd.store.redis:RedisStore",
    "redis-cluster": "microstd.store.redis:RedisStore",
    "nats": "microstd.store.nats:NatsStore",
    "s3": "microstd.store.s3:S3Store",
    "postgresql": "microstd.store.postgres:PostgresStore",
    "postgres": "microstd.store.postgres:PostgresStore",
}


_FAMILY = Backends(
    "store", "microstd.stores", _BUILTINS, blocking="microstd.store.blocking:BlockingStore"
)


def open(url: str = "memory://", **options: Any) -> Store:
    """The async store `url` names. Options override the URL's query parameters."""
    store: Store = _FAMILY.open(url, options)
    return store


def open_sync(url: str = "memory://", **options: Any) -> SyncStore:
    """The blocking store `url` names: native for embedded backends, else the async
    backend on a private loop thread."""
    store: SyncStore = _FAMILY.open_sync(url, options)
    return store
