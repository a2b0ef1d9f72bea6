"""What a conformance suite runs against: one backend of one area, for one test.

A target is a fresh, empty instance of a backend for one test; each `open()`
(or `open_sync()`) is a new, unconnected handle on that instance, so a suite
can open a second handle that sees the first one's writes, messages or locks.
Keyword arguments are options for that handle (`open(max_pending=2)`). The flags say
what the backend cannot do, so the suite checks that it refuses it cleanly
instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from microstd._backends import redact

__all__ = ["BrokerTarget", "RegistryTarget", "StoreTarget", "SyncTarget", "fresh_url"]


def fresh_url(template: str) -> str:
    """`template` with each `{unique}` replaced by an id of its own, so every test
    gets a fresh instance: `"dict://{unique}"`, `"redis://127.0.0.1:6379/0?prefix={unique}:"`."""
    return template.replace("{unique}", f"t{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True)
class StoreTarget:
    """A store backend under test. `watch=False`: its `watch()` raises `NotSupported`."""

    open: Callable[..., microstd.store.Store]
    open_sync: Callable[..., microstd.store.SyncStore]
    watch: bool = True
    name: str = "store"

    @classmethod
    def from_url(cls, url: str, *, watch: bool = True, **options: Any) -> StoreTarget:
        """The backend `url` names (with `{unique}` made fresh once, for this target)."""
        url = fresh_url(url)
        return cls(
            lambda **extra: microstd.store.open(url, **{**options, **extra}),
            lambda **extra: microstd.store.open_sync(url, **{**options, **extra}),
            watch=watch,
            name=redact(url),
        )


@dataclass(frozen=True)
class BrokerTarget:
    """A broker backend under test; every handle it opens is on the same bus."""

    open: Callable[..., microstd.broker.Broker]
    open_sync: Callable[..., microstd.broker.SyncBroker]
    name: str = "broker"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> BrokerTarget:
        """The backend `url` names (with `{unique}` made fresh once, for this target)."""
        url = fresh_url(url)
        return cls(
            lambda **extra: microstd.broker.open(url, **{**options, **extra}),
            lambda **extra: microstd.broker.open_sync(url, **{**options, **extra}),
            name=redact(url),
        )


@dataclass(frozen=True)
class SyncTarget:
    """A lock backend under test; every handle it opens shares the same locks.

    `short_ttl` is the shortest lease the backend keeps to the second (etcd
    rounds leases up to whole seconds, with a floor of about 2 s); `fifo=False`:
    it does not promise to serve waiters strictly in arrival order.
    """

    open: Callable[..., microstd.sync.Locks]
    open_sync: Callable[..., microstd.sync.SyncLocks]
    short_ttl: float = 0.3
    fifo: bool = True
    name: str = "sync"

    @classmethod
    def from_url(
        cls, url: str, *, short_ttl: float = 0.3, fifo: bool = True, **options: Any
    ) -> SyncTarget:
        """The backend `url` names (with `{unique}` made fresh once, for this target)."""
        url = fresh_url(url)
        return cls(
            lambda **extra: microstd.sync.open(url, **{**options, **extra}),
            lambda **extra: microstd.sync.open_sync(url, **{**options, **extra}),
            short_ttl=short_ttl,
            fifo=fifo,
            name=redact(url),
        )


@dataclass(frozen=True)
class RegistryTarget:
    """A registry backend under test; every handle it opens sees the same services."""

    open: Callable[..., microstd.registry.Registry]
    open_sync: Callable[..., microstd.registry.SyncRegistry]
    name: str = "registry"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RegistryTarget:
        """The backend `url` names (with `{unique}` made fresh once, for this target)."""
        url = fresh_url(url)
        return cls(
            lambda **extra: microstd.registry.open(url, **{**options, **extra}),
            lambda **extra: microstd.registry.open_sync(url, **{**options, **extra}),
            name=redact(url),
        )
