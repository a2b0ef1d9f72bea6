"""The fixtures the conformance suites use, built from the area's target fixture.

A test session provides `store_target`, `broker_target`, `sync_target` and/or
`registry_target` (the `--microstd-*` options do, or a conftest); these give
the suites an open handle of each surface, closed after the test. Load them
with `pytest_plugins = ["microstd.testing.fixtures"]` (the plugin does it
when an option is given).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from microstd.testing.targets import BrokerTarget, RegistryTarget, StoreTarget, SyncTarget

__all__ = [
    "broker",
    "locks",
    "prefix",
    "reg",
    "slocks",
    "store",
    "sync_broker",
    "sync_reg",
    "sync_store",
    "watch_supported",
]


@pytest_asyncio.fixture
async def store(store_target: StoreTarget) -> AsyncIterator[microstd.store.Store]:
    """An open async store of the target."""
    opened = store_target.open()
    await opened.connect()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sync_store(store_target: StoreTarget) -> Iterator[microstd.store.SyncStore]:
    """An open blocking store of the target."""
    opened = store_target.open_sync()
    opened.connect()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def watch_supported(store_target: StoreTarget) -> bool:
    """False when the target's `watch()` raises `NotSupported`."""
    return store_target.watch


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}/"


@pytest_asyncio.fixture
async def broker(broker_target: BrokerTarget) -> AsyncIterator[microstd.broker.Broker]:
    """An open async broker of the target."""
    async with broker_target.open() as opened:
        yield opened


@pytest.fixture
def sync_broker(broker_target: BrokerTarget) -> Iterator[microstd.broker.SyncBroker]:
    """An open blocking broker of the target."""
    with broker_target.open_sync() as opened:
        yield opened


@pytest_asyncio.fixture
async def locks(sync_target: SyncTarget) -> AsyncIterator[microstd.sync.Locks]:
    """Open async locks of the target."""
    async with sync_target.open() as opened:
        yield opened


@pytest.fixture
def slocks(sync_target: SyncTarget) -> Iterator[microstd.sync.SyncLocks]:
    """Open blocking locks of the target."""
    with sync_target.open_sync() as opened:
        yield opened


@pytest_asyncio.fixture
async def reg(registry_target: RegistryTarget) -> AsyncIterator[microstd.registry.Registry]:
    """An open async registry of the target."""
    async with registry_target.open() as opened:
        yield opened


@pytest.fixture
def sync_reg(registry_target: RegistryTarget) -> Iterator[microstd.registry.SyncRegistry]:
    """An open blocking registry of the target."""
    with registry_target.open_sync() as opened:
        yield opened
