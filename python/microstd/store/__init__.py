"""Key-value records with TTLs, revisions, conditional writes and watch.

    store = microstd.store.open("memory://")       # file://, redis://, nats://, s3://
    async with store:
        rev = await store.write("user/1", {"name": "a"}, ttl=60)
        rec = await store.read("user/1")

Backends are chosen by URL scheme; third parties add theirs through the
`microstd.stores` entry point group (an object with `from_url(parsed, **options)`
returning a `Store`, and optionally `from_url_sync`).
"""

from __future__ import annotations

from typing import Any

from microstd._backends import parse_url, resolve
from microstd.store.base import Event, Record, Revision, Store, SyncStore

__all__ = ["Event", "Record", "Revision", "Store", "SyncStore", "open", "open_sync"]

_BUILTINS = {
    "memory": "microstd.store.memory:MemoryBackend",
    "file": "microstd.store.file:FileStore",
    "redis": "microstd.store.redis:RedisStore",
    "nats": "microstd.store.nats:NatsStore",
    "s3": "microstd.store.s3:S3Store",
}


def _backend(url: str) -> tuple[Any, Any]:
    parsed = parse_url(url)
    return resolve("store", parsed.scheme, _BUILTINS, "microstd.stores"), parsed


def open(url: str = "memory://", **options: Any) -> Store:
    """The async store `url` names. Options override the URL's query parameters."""
    backend, parsed = _backend(url)
    store: Store = backend.from_url(parsed, **options)
    return store


def open_sync(url: str = "memory://", **options: Any) -> SyncStore:
    """The blocking store `url` names: native for embedded backends, else the async
    backend on a private loop thread."""
    backend, parsed = _backend(url)
    sync_factory = getattr(backend, "from_url_sync", None)
    if sync_factory is not None:
        store: SyncStore = sync_factory(parsed, **options)
        return store
    from microstd.store.blocking import BlockingStore

    return BlockingStore(backend.from_url(parsed, **options))
