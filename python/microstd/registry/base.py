"""The registry interface: services, their nodes, TTLs, lookup and watch.

`Registry` is the async interface. A backend implements five primitives
(`_put`, `_remove`, `_load`, `_changes`, and `connect` / `close`); the base
class builds registration, lookup and watch on them, so every backend has the
same semantics:

- a node is registered under (service name, node id) with an optional TTL;
  registering it again refreshes the TTL (a heartbeat) and replaces its record;
- a node whose TTL runs out is gone from `lookup` and `list_services` at once,
  whatever the backend's own expiry granularity, and `watch` reports it deleted;
- `watch` reports what changed between consecutive views of the registry:
  "create" for a new node, "update" for a node whose record changed, "delete"
  for a node deregistered or expired.

Note the name: `microstd.registry.ServiceRecord` is the registry's *record* of a
service (name, version, nodes, endpoints). The runnable service that serves
requests and registers itself is `microstd.Service`.
"""

from __future__ import annotations

import abc
import asyncio
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from microstd import _validate, codec
from microstd._lifecycle import AsyncResource
from microstd._tasks import wait_event
from microstd.errors import DecodeError, NotFound

__all__ = [
    "ChangeFeed",
    "Event",
    "EventChangeFeed",
    "EventKind",
    "Node",
    "NodeRecord",
    "Registry",
    "ServiceRecord",
    "validate_name",
    "validate_node_id",
]

EventKind = Literal["create", "update", "delete"]


def validate_name(name: object) -> str:
    """A service name: dot-separated tokens of letters, digits, `_` and `-`; else
    `InvalidKey` (the shared rules of `microstd._validate`)."""
    return _validate.service_name(name)


def validate_node_id(node_id: object) -> str:
    """A node id: letters, digits, `_` and `-`; else `InvalidKey`."""
    return _validate.node_id(node_id)


@dataclass
class Node:
    """One running instance of a service: its id, `host:port` address and metadata."""

    id: str
    address: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceRecord:
    """The registry's record of a service: name, version, nodes and endpoint names.

    This is a description, not the runnable service (that is `microstd.Service`).
    `lookup` returns one `ServiceRecord` per version, each with the live nodes of that
    version; `endpoints` are names such as `"Greeter.Hello"`.
    """

    name: str
    version: str = ""
    nodes: list[Node] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """A change seen by `watch`: `service` holds the one node concerned."""

    kind: EventKind
    service: ServiceRecord


@dataclass(frozen=True)
class NodeRecord:
    """What a backend stores per node; `expires_at` is epoch seconds or None."""

    name: str
    version: str
    endpoints: tuple[str, ...]
    node_id: str
    address: str
    metadata: tuple[tuple[str, str], ...]
    expires_at: float | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.node_id)

    def alive(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def same_content(self, other: NodeRecord) -> bool:
        """Equal but for the expiry time, which every heartbeat moves."""
        return (self.version, self.endpoints, self.address, self.metadata) == (
            other.version,
            other.endpoints,
            other.address,
            other.metadata,
        )

    def service(self) -> ServiceRecord:
        node = Node(self.node_id, self.address, dict(self.metadata))
        return ServiceRecord(self.name, self.version, [node], list(self.endpoints))

    def encode(self) -> bytes:
        return codec.json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "endpoints": list(self.endpoints),
                "node": {
                    "id": self.node_id,
                    "address": self.address,
                    "metadata": dict(self.metadata),
                },
                "expires_at": self.expires_at,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> NodeRecord:
        """Parse a stored record; raises `DecodeError` for anything malformed."""
        # Anyone with write access to the backend can put anything here: every
        # field's type is checked, so a foreign record is skipped, not half-read.
        try:
            raw = codec.json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            node = raw["node"]
            if not isinstance(node, dict):
                raise TypeError("node is not an object")
            endpoints = raw.get("endpoints", [])
            metadata = node.get("metadata", {})
            expires = raw.get("expires_at")
            texts = (raw["name"], raw.get("version", ""), node["id"], node["address"])
            if not all(isinstance(t, str) for t in texts):
                raise TypeError("name, version, node id and address must be text")
            if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
                raise TypeError("endpoints must be a list of text")
            if not isinstance(metadata, dict) or not all(
                isinstance(v, str) for v in metadata.values()
            ):
                raise TypeError("metadata must map text to text")
            if expires is not None and (
                isinstance(expires, bool) or not isinstance(expires, (int, float))
            ):
                raise TypeError("expires_at must be a number")
            return cls(
                name=raw["name"],
                version=raw.get("version", ""),
                endpoints=tuple(endpoints),
                node_id=node["id"],
                address=node["address"],
                metadata=tuple(sorted(metadata.items())),
                expires_at=float(expires) if expires is not None else None,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DecodeError(f"malformed registry record: {exc}", 0) from exc


def _records_of(service: ServiceRecord, ttl: float | None) -> list[NodeRecord]:
    validate_name(service.name)
    expires = time.time() + ttl if ttl is not None else None
    out = []
    for node in service.nodes:
        validate_node_id(node.id)
        if not isinstance(node.address, str) or not node.address:
            raise ValueError(f"node {node.id!r} needs an address such as '127.0.0.1:8080'")
        out.append(
            NodeRecord(
                name=service.name,
                version=str(service.version),
                endpoints=tuple(str(e) for e in service.endpoints),
                node_id=node.id,
                address=node.address,
                metadata=tuple(sorted((str(k), str(v)) for k, v in node.metadata.items())),
                expires_at=expires,
            )
        )
    return out


def group(records: Iterable[NodeRecord]) -> list[ServiceRecord]:
    """Live records grouped into one `ServiceRecord` per (name, version), sorted."""
    by_version: dict[tuple[str, str], ServiceRecord] = {}
    for rec in sorted(records, key=lambda r: (r.name, r.version, r.node_id)):
        svc = by_version.get((rec.name, rec.version))
        if svc is None:
            svc = ServiceRecord(rec.name, rec.version, [], list(rec.endpoints))
            by_version[(rec.name, rec.version)] = svc
        svc.nodes.append(Node(rec.node_id, rec.address, dict(rec.metadata)))
        for endpoint in rec.endpoints:
            if endpoint not in svc.endpoints:
                svc.endpoints.append(endpoint)
    return list(by_version.values())


class ChangeFeed(abc.ABC):
    """A backend's hint that something may have changed; `watch` re-reads on each.
    A backend whose hint is an event set on the watch's loop uses `EventChangeFeed`."""

    @abc.abstractmethod
    async def wait(self, timeout: float) -> None:
        """Return when a change may have happened, or after `timeout` seconds."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening."""


class EventChangeFeed(ChangeFeed):
    """A change feed whose hint is one `asyncio.Event`: the backend calls
    `mark_changed` (on the watch's loop) whenever something may have changed."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def mark_changed(self) -> None:
        """Wake the watch: it re-reads the registry."""
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        await wait_event(self._changed, timeout)
        # Cleared before the re-read that follows: a change during that re-read
        # sets it again, and one before it is in what the re-read finds.
        self._changed.clear()


class Registry(AsyncResource, abc.ABC):
    """The async registry interface. Use `microstd.registry.open(url)` to get one."""

    #: How often `watch` re-reads when the backend gives no change hint.
    poll_interval: float = 1.0

    @abc.abstractmethod
    async def connect(self) -> None:
        """Connect to the backend (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection (idempotent)."""

    @property
    def embedded(self) -> bool:
        """True for the in-process registry, where calls may skip the network."""
        return False

    # --- backend primitives -------------------------------------------------

    @abc.abstractmethod
    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        """Store `record`, replacing the node's previous one; expire it after `ttl`."""

    @abc.abstractmethod
    async def _remove(self, name: str, node_id: str) -> None:
        """Remove one node; removing a missing node is not an error."""

    @abc.abstractmethod
    async def _load(self, name: str | None) -> list[NodeRecord]:
        """Every stored record of service `name` (all services for None), expired or not."""

    async def _changes(self) -> ChangeFeed | None:
        """A change hint for `watch`, or None to poll every `poll_interval`."""
        return None

    # --- the interface ------------------------------------------------------

    async def register(self, service: ServiceRecord, ttl: float | None = None) -> None:
        """Register (or refresh) each node of `service`; they expire after `ttl` seconds.

        A node that is not registered again within its TTL disappears from
        lookups, so a crashed process drops out without deregistering.
        """
        self._check_open()
        ttl = _validate.ttl_or_none(ttl)
        records = _records_of(service, ttl)
        if not records:
            raise ValueError(f"service {service.name!r} has no nodes to register")
        for rec in records:
            await self._put(rec, ttl)

    async def deregister(self, service: ServiceRecord) -> None:
        """Remove the nodes of `service`; with no nodes listed, every node of that
        name and version. Removing what is not registered is not an error."""
        self._check_open()
        validate_name(service.name)
        if service.nodes:
            for node in service.nodes:
                await self._remove(service.name, validate_node_id(node.id))
            return
        for rec in await self._load(service.name):
            if rec.name == service.name and rec.version == str(service.version):
                await self._remove(rec.name, rec.node_id)

    async def _live(self, name: str | None) -> list[NodeRecord]:
        self._check_open()
        now = time.time()
        return [
            r for r in await self._load(name) if r.alive(now) and (name is None or r.name == name)
        ]

    async def lookup(self, name: str) -> list[ServiceRecord]:
        """The live nodes of service `name`, one `ServiceRecord` per version; `NotFound` if none."""
        found = group(await self._live(validate_name(name)))
        if not found:
            raise NotFound(f"service {name!r} is not registered")
        return found

    async def list_services(self) -> list[ServiceRecord]:
        """Every registered service, one entry per (name, version), with its live nodes."""
        return group(await self._live(None))

    async def watch(self, name: str | None = None) -> AsyncIterator[Event]:
        """Yield create / update / delete events for nodes (of `name`, or of all services).

        Events describe changes after the watch started; the registry's current
        contents are the starting point, not reported. It ends when the registry
        is closed.
        """
        self._check_open()
        if name is not None:
            validate_name(name)
        feed = await self._changes()
        try:
            seen: Mapping[tuple[str, str], NodeRecord] = {r.key: r for r in await self._live(name)}
            while True:
                now = time.time()
                expiries = [r.expires_at - now for r in seen.values() if r.expires_at is not None]
                timeout = min([self.poll_interval, *expiries])
                if feed is None:
                    await asyncio.sleep(max(timeout, 0.0))
                else:
                    await feed.wait(max(timeout, 0.0))
                if self.closed:
                    return
                current = {r.key: r for r in await self._live(name)}
                for key, rec in current.items():
                    old = seen.get(key)
                    if old is None:
                        yield Event("create", rec.service())
                    elif not rec.same_content(old):
                        yield Event("update", rec.service())
                for key, old in seen.items():
                    if key not in current:
                        yield Event("delete", old.service())
                seen = current
        finally:
            if feed is not None:
                await feed.close()


def __getattr__(name: str) -> object:
    # `Service` was the record's name until it clashed with `microstd.Service`.
    if name == "Service":
        warnings.warn(
            "microstd.registry.Service is now microstd.registry.ServiceRecord"
            " (microstd.Service is the runnable service)",
            DeprecationWarning,
            stacklevel=3
            if sys._getframe(1).f_globals.get("__name__") == "microstd.registry"
            else 2,
        )
        return ServiceRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
