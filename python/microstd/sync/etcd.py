"""`etcd://`: locks and elections on etcd v3, with etcd's own semantics.

Both follow etcd's `concurrency` package: a contender grants a lease, puts
`<prefix>/<lease-id>` under that lease, and holds the lock (or leads) once
its key has the lowest create revision under the prefix. Until then it
watches the deletion of the key just before its own (no herd: one watcher per
key). The fencing token is the key's create revision, which only grows. The
lease is kept alive by `refresh()` (and by the election's renewal task); if
it runs out, etcd deletes the key and the next contender goes ahead.

etcd leases are whole seconds with a server-side floor (about 2 s on a
default server): `Lease.ttl` reports what the server granted.

Talks to etcd's JSON gateway through aiohttp; see `_etcdapi` for why.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from microstd._backends import ParsedURL
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._election import RenewingLeadership
from microstd.sync._etcdapi import EtcdAPI, b64, field, int_field, kvs_of, prefix_end, unb64
from microstd.sync.base import (
    DEFAULT_TTL,
    Leadership,
    Lease,
    Locks,
    validate_name,
    validate_ttl,
    validate_wait,
)
from microstd.sync.memory import default_owner

__all__ = ["EtcdLease", "EtcdLocks"]


def _seconds(ttl: float) -> int:
    return max(1, math.ceil(ttl))


class EtcdLease(Lease):
    """A key held under an etcd lease; the token is the key's create revision."""

    def __init__(
        self, api: EtcdAPI, key: str, name: str, owner: str, token: int, lease_id: str, ttl: float
    ) -> None:
        self._api = api
        self._key = key
        self._lease_id = lease_id
        self.name = name
        self.owner = owner
        self.token = token
        self._ttl = ttl
        self._expires_at = time.time() + ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return self._expires_at

    def _lost(self) -> LockLost:
        return LockLost(f"lock {self.name!r} (token {self.token}) is no longer held")

    def _still_mine(self) -> dict[str, Any]:
        return {
            "key": b64(self._key),
            "target": "CREATE",
            "result": "EQUAL",
            "create_revision": str(self.token),
        }

    async def refresh(self, ttl: float | None = None) -> None:
        if ttl is not None and _seconds(validate_ttl(ttl)) != _seconds(self._ttl):
            await self._move_to_new_lease(ttl)
            return
        alive = await self._api.call("lease/keepalive", {"ID": self._lease_id})
        if int_field(alive, "result", "TTL", default=0) <= 0:
            raise self._lost()
        # The lease lives; check the key is still this holding's own.
        got = await self._api.call("kv/range", {"key": b64(self._key)})
        kvs = kvs_of(got)
        if not kvs or int_field(kvs[0], "create_revision", default=-1) != self.token:
            raise self._lost()
        self._expires_at = time.time() + self._ttl

    async def _move_to_new_lease(self, ttl: float) -> None:
        granted = await self._api.call("lease/grant", {"TTL": _seconds(ttl)})
        new_id, new_ttl = str(int_field(granted, "ID")), float(int_field(granted, "TTL"))
        # A put keeps the key's create revision, so the token does not change.
        moved = await self._api.call(
            "kv/txn",
            {
                "compare": [self._still_mine()],
                "success": [
                    {
                        "request_put": {
                            "key": b64(self._key),
                            "value": b64(self.owner),
                            "lease": new_id,
                        }
                    }
                ],
            },
        )
        old_id = self._lease_id
        if not moved.get("succeeded"):
            await self._api.call("lease/revoke", {"ID": new_id})
            raise self._lost()
        self._lease_id, self._ttl = new_id, new_ttl
        self._expires_at = time.time() + new_ttl
        await self._api.call("lease/revoke", {"ID": old_id})

    async def release(self) -> None:
        done = await self._api.call(
            "kv/txn",
            {
                "compare": [self._still_mine()],
                "success": [{"request_delete_range": {"key": b64(self._key)}}],
            },
        )
        with contextlib.suppress(Exception):
            await self._api.call("lease/revoke", {"ID": self._lease_id})
        if not done.get("succeeded"):
            raise self._lost()


class EtcdLocks(Locks):
    """Locks and elections on etcd v3 (leases, transactions, watches)."""

    def __init__(self, base: str, *, prefix: str = "microstd/", owner: str | None = None) -> None:
        self._base = base
        self._prefix = prefix
        self._owner = owner or default_owner()
        self._api = EtcdAPI(base)

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> EtcdLocks:
        query: dict[str, Any] = dict(parsed.query)
        query.update(options)
        scheme = "https" if str(query.pop("tls", "")).lower() in {"1", "true", "yes"} else "http"
        return cls(f"{scheme}://{parsed.host or '127.0.0.1'}:{parsed.port or 2379}", **query)

    def __repr__(self) -> str:
        return f"EtcdLocks({self._base!r})"

    async def connect(self) -> None:
        await self._api.call("maintenance/status", {})

    async def close(self) -> None:
        await self._api.close()

    async def _contend(
        self, kind: str, name: str, ttl: float, wait: float | None, value: str
    ) -> EtcdLease:
        self._check_open()
        validate_name(name)
        ttl = validate_ttl(ttl)
        wait = validate_wait(wait)
        prefix = f"{self._prefix}{kind}/{name}/"
        granted = await self._api.call("lease/grant", {"TTL": _seconds(ttl)})
        lease_id = str(int_field(granted, "ID"))
        key = f"{prefix}{int(lease_id):x}"
        try:
            put = await self._api.call(
                "kv/put", {"key": b64(key), "value": b64(value), "lease": lease_id}
            )
            token = int_field(put, "header", "revision")
            if wait is None:
                await self._wait_turn(prefix, token)
            else:
                try:
                    await asyncio.wait_for(self._wait_turn(prefix, token, wait == 0), wait or None)
                except asyncio.TimeoutError:
                    raise LockTimeout(f"lock {name!r} not acquired within {wait}s") from None
        except BaseException:
            # Give the place up: revoking the lease deletes the key.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._api.call("lease/revoke", {"ID": lease_id}))
            raise
        granted_ttl = float(int_field(granted, "TTL", default=_seconds(ttl)))
        return EtcdLease(self._api, key, name, value, token, lease_id, granted_ttl)

    async def _wait_turn(self, prefix: str, token: int, once: bool = False) -> None:
        """Return once no key under `prefix` was created before `token`."""
        while True:
            got = await self._api.call(
                "kv/range",
                {
                    "key": b64(prefix),
                    "range_end": prefix_end(prefix),
                    "max_create_revision": str(token - 1),
                    "sort_order": "DESCEND",
                    "sort_target": "CREATE",
                    "limit": 1,
                    "keys_only": True,
                },
            )
            kvs = kvs_of(got)
            if not kvs:
                return
            if once:
                raise asyncio.TimeoutError
            # Watch from just after this read, so a deletion in between is seen.
            start = int_field(got, "header", "revision") + 1
            before = field(kvs[0], "key")  # still base64, as the watch wants it
            if not isinstance(before, str):
                raise ConnectionFailed("etcd answered a non-text key")
            async for result in self._api.watch({"key": before, "start_revision": str(start)}):
                events = result.get("events")
                if isinstance(events, list) and any(
                    isinstance(ev, dict) and ev.get("type") == "DELETE" for ev in events
                ):
                    break

    async def acquire(
        self,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float | None = None,
        *,
        owner: str | None = None,
    ) -> Lease:
        return await self._contend("lock", name, ttl, wait, owner or self._owner)

    async def elect(
        self, name: str, candidate: str, ttl: float = DEFAULT_TTL, wait: float | None = None
    ) -> Leadership:
        lease = await self._contend("election", name, ttl, wait, candidate)
        return self._won(RenewingLeadership(lease, candidate))

    async def leader(self, name: str) -> str | None:
        self._check_open()
        prefix = f"{self._prefix}election/{validate_name(name)}/"
        got = await self._api.call(
            "kv/range",
            {
                "key": b64(prefix),
                "range_end": prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
                "limit": 1,
            },
        )
        kvs = kvs_of(got)
        return unb64(kvs[0].get("value", "")) if kvs else None
