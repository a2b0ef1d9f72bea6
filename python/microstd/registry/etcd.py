"""`etcd://`: the registry in etcd, through its v3 JSON gateway (etcd 3.4+).

URL: `etcd://host:port?prefix=/microstd/registry/` (`etcds://` for TLS), or a
cluster's members, `etcd://h1:2379,h2:2379,h3:2379?prefix=...` (see
docs/clusters.md: requests and the watch move to another member). Each
node is a key `PREFIX NAME/NODE` attached to a lease of the node's TTL; a
heartbeat keeps the lease alive, so a node whose process dies is removed by
etcd itself. `watch` follows a `/v3/watch` stream to re-read on every change.

Writes that cannot land late. On a cluster a request given up on a silent
member (frozen, or behind a network that holds its packets) is sent to the
next one, and the silent member may still carry it out later. So every
write is a transaction compared on the node key's mod revision this client
last wrote or read there (0, "absent", for a node it never saw): a put
arriving after any later write of the same key (by this client or another)
finds the key changed and does nothing, however late it arrives. A deregister does not delete
the key (a deleted key is "absent" again, which a late first put would
match) but replaces it with a tombstone, on a lease of `tombstone_ttl`
seconds (``?tombstone_ttl=``, 300 by default), after which etcd removes it;
`lookup`, `list_services` and `watch` never show one (a watch reports the
node deleted). Tested (tests/faults/cluster/test_etcd_late_puts.py): a put
held by a stalled network, or a frozen member, and carried out after the
client registered the node elsewhere and then deregistered it, or
registered a newer record, changes nothing, with or without a TTL. What it
does not cover: a *first* put of a node (compared on "absent") that arrives
later than `tombstone_ttl` after the deregister, once the tombstone is gone.

When a compare fails, the same transaction reads the key: the very value
(and lease) the call writes already there is an earlier attempt of the same
call that landed with its answer lost, so the call succeeded; anything else
(a tombstone, another process's record, no key) was there before this call
looked, so the call writes again compared on what it found. Registering a
node after a deregister (this process's or another's) therefore registers
it, and two processes registering the same node id replace each other's
record, last writer wins, as with a plain put.

Connection, timeouts and errors are `microstd._engines.etcd`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``; 5, 5 and 10 s; on a
cluster ``attempt_timeout``, a third of `timeout`). A watch
re-reads the whole registry on every hint and at least every `poll_interval`;
a lost watch stream is opened again on its own, so it costs latency, not
events. A watch whose re-read fails (the server is away) ends with
`ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import etcd as engine
from microstd._engines._common import seconds_option
from microstd._tasks import stop_task
from microstd.errors import Closed, ConnectionFailed, DecodeError, InvalidArgument
from microstd.registry.base import ChangeFeed, EventChangeFeed, NodeRecord, Registry

__all__ = ["EtcdRegistry"]

log = logging.getLogger("microstd.registry")

DEFAULT_PREFIX = "/microstd/registry/"
#: What a deregister leaves at a node's key instead of deleting it: a delete leaves
#: the key as it was before the node's first put, which a put sent before the
#: deregister and arriving late (compared on "absent") would find. Not JSON, so
#: any reader of the records (an older microstd included) skips it.
TOMBSTONE = b"microstd:registry:deregistered"
#: Seconds a tombstone stays (on its own lease): how late a put of a node that
#: this client had never seen stored may land and still be refused.
DEFAULT_TOMBSTONE_TTL = 300.0
# A compared write that keeps finding another writer's newer value gives up after this.
_WRITE_TRIES = 5
_LEASE_NOT_FOUND = 5  # gRPC NOT_FOUND: "requested lease not found"
# Pause before opening a lost watch stream again (doubling up to the max).
_RETRY_MIN = 0.2
_RETRY_MAX = 5.0


class _EtcdFeed(EventChangeFeed):
    """Sets an event on every watch response; reopens the stream when it is lost."""

    def __init__(self, client: engine.EtcdClient, prefix: str) -> None:
        super().__init__()
        self._client = client
        self._request = {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)}
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        pause = _RETRY_MIN
        while not self._closing:  # a cancellation lost on the way must not keep it going
            try:
                async for _result in self._client.watch(self._request, "registry watch"):
                    self.mark_changed()
                    pause = _RETRY_MIN
            except ConnectionFailed as exc:
                log.debug("registry watch stream lost, reopening: %s", exc)
            # Whatever changed meanwhile is found by the re-read this wakes.
            self.mark_changed()
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX)

    async def close(self) -> None:
        self._closing = True
        await stop_task(self._task, "registry watch stream")


class EtcdRegistry(Registry):
    """Registry on etcd v3 (JSON gateway over aiohttp); nodes live on leases."""

    def __init__(
        self,
        base_url: str | engine.EtcdEndpoint,
        *,
        prefix: str = DEFAULT_PREFIX,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        **connection: Any,
    ) -> None:
        """`base_url` is ``etcd://host:port`` or ``http(s)://host:port`` (or an
        endpoint); `connection` holds the engine's options; `tombstone_ttl` is how
        long (seconds) a deregistered node's tombstone stays."""
        if isinstance(base_url, engine.EtcdEndpoint):
            if connection:
                raise InvalidArgument(f"unknown etcd registry options: {sorted(connection)}")
            self._endpoint = base_url
        else:
            self._endpoint, rest = engine.EtcdEndpoint.from_url(base_url, connection)
            if rest:
                raise InvalidArgument(f"unknown etcd registry options: {sorted(rest)}")
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.tombstone_ttl = seconds_option("tombstone_ttl", tombstone_ttl)
        self._client: engine.EtcdClient | None = None
        self._leases: dict[tuple[str, str], tuple[str, int]] = {}
        # Per node: the key's mod revision this client last wrote or found there,
        # which its next write is compared on.
        self._revisions: dict[tuple[str, str], int] = {}
        # Per node: the lease of the tombstone this client left there, revoked once a
        # later write moved the key off it (else it lives on, holding nothing).
        self._tombstones: dict[tuple[str, str], str] = {}

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> EtcdRegistry:
        endpoint, mine = engine.EtcdEndpoint.from_url(parsed, options)
        prefix = str(mine.pop("prefix", DEFAULT_PREFIX))
        tombstone_ttl = mine.pop("tombstone_ttl", DEFAULT_TOMBSTONE_TTL)
        if mine:
            raise InvalidArgument(f"unknown etcd registry options: {sorted(mine)}")
        return cls(endpoint, prefix=prefix, tombstone_ttl=tombstone_ttl)

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` of the server."""
        return self._endpoint.base

    def __repr__(self) -> str:
        return f"EtcdRegistry({self._endpoint.redacted!r})"

    async def connect(self) -> None:
        client = await self._etcd()
        await client.call("maintenance/status", {}, "registry connect", idempotent=True)

    async def _etcd(self) -> engine.EtcdClient:
        if self._client is None:
            if self.closed:
                raise Closed("registry is closed")
            self._client = await engine.acquire(self._endpoint)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await engine.release(client)

    async def _call(
        self, path: str, body: dict[str, Any], what: str, *, idempotent: bool = True
    ) -> dict[str, Any]:
        """One request; every one the registry makes is safe to send twice (a read,
        a keepalive or revoke, a lease grant, whose ID the client picks: see
        `EtcdClient.grant_lease`, and a write, a transaction compared on the key's
        revision: sent again after the first landed, its compare fails; see
        `_write`), so on a cluster it is sent to the next member after any
        failure, or after `attempt_timeout` on a silent one."""
        client = await self._etcd()
        return await client.call(path, body, f"registry {what}", idempotent=idempotent)

    def _key(self, name: str, node_id: str) -> str:
        return f"{self.prefix}{name}/{node_id}"

    async def _lease(self, key: tuple[str, str], ttl: float) -> tuple[str, str | None]:
        """The node's lease, kept alive or newly granted, and a lease it replaces
        (to revoke once the put moved the key off it), if any."""
        seconds = max(1, math.ceil(ttl))
        held = self._leases.get(key)
        if held is not None and held[1] == seconds:
            answer = await self._call("lease/keepalive", {"ID": held[0]}, "register")
            if engine.int_field(answer, "result", "TTL", default=0) > 0:
                return held[0], None
        client = await self._etcd()
        # The lease's ID is chosen by the client: a grant sent again is the same grant.
        lease_id, _ = await client.grant_lease(seconds, "registry register")
        self._leases[key] = (lease_id, seconds)
        return lease_id, None if held is None else held[0]

    async def _revoke(self, lease_id: str, what: str) -> None:
        # A lease left behind only holds nothing until it runs out: not an error.
        with contextlib.suppress(ConnectionFailed, engine.EtcdAPIError):
            await self._call("lease/revoke", {"ID": lease_id}, what)

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        value = record.encode()
        tombstone = self._tombstones.get(record.key)  # left before this put was sent
        if ttl is None:
            held = self._leases.pop(record.key, None)
            await self._write(record.key, value, None, "register")
            replaced = None if held is None else held[0]
        else:
            lease, replaced = await self._lease(record.key, ttl)
            try:
                await self._write(record.key, value, lease, "register")
            except engine.EtcdAPIError as exc:
                if exc.code != _LEASE_NOT_FOUND:
                    raise
                # The lease ran out between keepalive and put: take a new one, once.
                self._leases.pop(record.key, None)
                lease, _ = await self._lease(record.key, ttl)
                await self._write(record.key, value, lease, "register")
        if tombstone is not None and self._tombstones.get(record.key) == tombstone:
            del self._tombstones[record.key]
        else:
            # None, or a deregister of this node ran while this put was on its way:
            # its tombstone may be the key's latest write, so its lease stays.
            tombstone = None
        # The key moved off these leases with the put: they hold nothing now.
        for old in (replaced, tombstone):
            if old is not None:
                await self._revoke(old, "register")

    async def _remove(self, name: str, node_id: str) -> None:
        client = await self._etcd()
        # The tombstone's own lease: it goes once no put sent before it can still come.
        lease, _ = await client.grant_lease(
            max(1, math.ceil(self.tombstone_ttl)), "registry deregister"
        )
        node = (name, node_id)
        earlier = self._tombstones.get(node)  # left before this one was sent
        await self._write(node, TOMBSTONE, lease, "deregister")
        if self._tombstones.get(node) == earlier:
            self._tombstones[node] = lease
            if earlier is not None and earlier != lease:
                await self._revoke(earlier, "deregister")  # the new tombstone replaced it
        # else another deregister of this node ran meanwhile: which of the two
        # tombstones the key holds is not known, so neither lease is revoked.
        held = self._leases.pop((name, node_id), None)
        if held is not None:
            await self._revoke(held[0], "deregister")

    async def _write(
        self, node: tuple[str, str], value: bytes, lease: str | None, what: str
    ) -> None:
        """Put `value` at `node`'s key (on `lease`), as a transaction compared on the
        key's revision this client last saw (0: absent), so that the request, sent
        again or arriving late, never lands after a later write of the key.

        A failed compare reads the key in the same transaction: the value this
        call writes (under its lease) there already is an earlier attempt of this
        call that landed (its answer lost), so done; anything else (a tombstone,
        another process's record, the key gone) was written before this call
        looked, so this call, the latest word, writes again compared on what it
        found: last writer wins, as for a plain put."""
        key = engine.b64(self._key(*node))
        put: dict[str, Any] = {"key": key, "value": engine.b64(value)}
        if lease is not None:
            put["lease"] = lease
        revision = self._revisions.get(node, 0)
        for _ in range(_WRITE_TRIES):
            compare = {"key": key, "target": "MOD", "result": "EQUAL"}
            answer = await self._call(
                "kv/txn",
                {
                    "compare": [{**compare, "mod_revision": str(revision)}],
                    "success": [{"request_put": put}],
                    "failure": [{"request_range": {"key": key}}],
                },
                what,
            )
            if answer.get("succeeded"):
                self._revisions[node] = engine.int_field(answer, "header", "revision")
                return
            found = engine.txn_read(answer)
            if found is None:
                revision = 0  # gone (its lease ran out, or deleted): create it
                continue
            revision = engine.int_field(found, "mod_revision")
            stored = engine.unb64_bytes(found.get("value", ""))
            same_lease = engine.int_field(found, "lease", default=0) == int(lease or 0)
            # Only this call's own value on its own lease is an earlier attempt that
            # landed. A tombstone this client had not seen (another process's
            # deregister) is written over: its lease runs out sooner than this
            # deregister's tombstone_ttl, after which a late put would land.
            if stored == value and same_lease:
                self._revisions[node] = revision
                return
        raise ConnectionFailed(
            f"registry {what}: {self._key(*node)!r} changed under every one of "
            f"{_WRITE_TRIES} compared writes (other writers of the same node)"
        )

    async def _load(self, name: str | None) -> list[NodeRecord]:
        prefix = f"{self.prefix}{name}/" if name else self.prefix
        answer = await self._call(
            "kv/range",
            {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)},
            "lookup",
        )
        out = []
        for kv in engine.kvs_of(answer):
            value = kv.get("value", "")
            if not isinstance(value, str):
                continue  # not an etcd value: skipped, like a foreign record
            try:
                data = base64.b64decode(value, validate=True)
                if data != TOMBSTONE:  # a deregistered node: none
                    out.append(NodeRecord.decode(data))
            except (DecodeError, ValueError):
                continue  # not a record of ours
        return out

    async def _changes(self) -> ChangeFeed:
        return _EtcdFeed(await self._etcd(), self.prefix)
