"""Distributed locks with leases and fencing tokens, and leader election.

    locks = microstd.sync.open("memory://")        # redis://..., etcd://..., postgresql://...
    async with locks.lock("invoice/42", ttl=10.0, wait=5.0) as lease:
        lease.token                                # fencing token, strictly increasing per name
    leadership = await locks.elect("scheduler", candidate="node-1", ttl=10.0)
    await leadership.lost                          # set when leadership is lost

Backends are chosen by URL scheme; third parties add theirs through the
`microstd.sync` entry point group (an object with `from_url(parsed, **options)`
returning a `Locks`, and optionally `from_url_sync`).
"""

from __future__ import annotations

from typing import Any

from microstd._backends import Backends
from microstd.sync.base import (
    DEFAULT_TTL,
    Leadership,
    Lease,
    Locks,
    LostSignal,
    SyncLeadership,
    SyncLease,
    SyncLocks,
)

__all__ = [
    "DEFAULT_TTL",
    "Leadership",
    "Lease",
    "Locks",
    "LostSignal",
    "SyncLeadership",
    "SyncLease",
    "SyncLocks",
    "open",
    "open_sync",
]

_BUILTINS = {
    "memory": "microstd.sync.memory:MemoryBackend",
    "redis": "microstd.sync.redis:RedisLocks",
    "rediss": "microstd.sync.redis:RedisLocks",  # TLS (redis-py's spelling)
    # Redis behind Sentinel (microstd._engines.redis_sentinel), in its usual spellings.
    "redis+sentinel": "microstd.sync.redis:RedisLocks",
    "rediss+sentinel": "microstd.sync.redis:RedisLocks",
    "redis-sentinel": "microstd.sync.redis:RedisLocks",
    "sentinel": "microstd.sync.redis:RedisLocks",
    # Redis Cluster (microstd._engines.redis_cluster): refused at open, see docs/clusters.md.
    "redis+cluster": "microstd.sync.redis:RedisLocks",
    "rediss+cluster": "microstd.sync.redis:RedisLocks",
    "redis-cluster": "microstd.sync.redis:RedisLocks",
    "etcd": "microstd.sync.etcd:EtcdLocks",
    "postgresql": "microstd.sync.postgres:PostgresLocks",
    "postgres": "microstd.sync.postgres:PostgresLocks",
}


_FAMILY = Backends(
    "sync", "microstd.sync", _BUILTINS, blocking="microstd.sync.blocking:BlockingLocks"
)


def open(url: str = "memory://", **options: Any) -> Locks:
    """The async locks `url` names. Options override the URL's query parameters."""
    locks: Locks = _FAMILY.open(url, options)
    return locks


def open_sync(url: str = "memory://", **options: Any) -> SyncLocks:
    """The blocking locks `url` names: native for memory://, else the async backend
    on a private loop thread."""
    locks: SyncLocks = _FAMILY.open_sync(url, options)
    return locks
