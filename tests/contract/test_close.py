"""`close()` means closed, on every backend of every area and on both surfaces.

After `close()` (idempotent) a handle reports `closed`, and each of its
methods, `connect()` included, raises `Closed`; what it started ends with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import microstd
import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from conftest import BROKER_BACKENDS, REGISTRY_BACKENDS, STORE_BACKENDS, SYNC_BACKENDS
from microstd.errors import Closed
from microstd.registry import Node, Service

_RECORD = Service("greeter", "1.0", [Node("n1", "127.0.0.1:9000")])


async def _refused(*calls: Callable[[], Awaitable[object]]) -> None:
    for call in calls:
        with pytest.raises(Closed, match="is closed"):
            await call()


def _refused_sync(*calls: Callable[[], object]) -> None:
    for call in calls:
        with pytest.raises(Closed, match="is closed"):
            call()


async def _first(iterator: Any) -> object:
    return await iterator.__anext__()


@pytest.fixture(params=list(STORE_BACKENDS))
def store_url(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return STORE_BACKENDS[request.param](request)


async def test_store(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    store = microstd.store.open(url, **options)
    async with store:
        await store.write("k", 1)
        assert not store.closed
    assert store.closed
    await store.close()  # idempotent
    await _refused(
        store.connect,
        lambda: store.write("k", 2),
        lambda: store.read("k"),
        lambda: store.read_many(["k"]),
        lambda: store.write_many({"k": 2}),
        lambda: store.exists("k"),
        lambda: store.delete("k"),
        lambda: store.list(),
    )


def test_store_blocking(store_url: tuple[str, dict[str, Any]]) -> None:
    url, options = store_url
    store = microstd.store.open_sync(url, **options)
    with store:
        store.write("k", 1)
    assert store.closed
    store.close()
    _refused_sync(
        store.connect,
        lambda: store.write("k", 2),
        lambda: store.read("k"),
        lambda: store.exists("k"),
        lambda: store.delete("k"),
        lambda: store.list(),
    )


@pytest.fixture(params=list(SYNC_BACKENDS))
def locks_url(request: pytest.FixtureRequest) -> str:
    return SYNC_BACKENDS[request.param](request)


async def test_locks(locks_url: str) -> None:
    locks = microstd.sync.open(locks_url)
    async with locks:
        lease = await locks.acquire("held", ttl=5.0)
        await lease.release()
    assert locks.closed
    await locks.close()

    async def enter_lock() -> None:
        async with locks.lock("x", ttl=1.0):
            pass

    await _refused(
        locks.connect,
        lambda: locks.acquire("x", ttl=1.0),
        lambda: locks.acquire("x", ttl=1.0, wait=0),
        enter_lock,
        lambda: locks.elect("e", candidate="c", ttl=1.0),
        lambda: locks.leader("e"),
    )


def test_locks_blocking(locks_url: str) -> None:
    locks = microstd.sync.open_sync(locks_url)
    with locks:
        locks.acquire("held", ttl=5.0).release()
    assert locks.closed
    locks.close()

    def enter_lock() -> None:
        with locks.lock("x", ttl=1.0):
            pass

    _refused_sync(
        locks.connect,
        lambda: locks.acquire("x", ttl=1.0),
        enter_lock,
        lambda: locks.elect("e", candidate="c", ttl=1.0),
        lambda: locks.leader("e"),
    )


@pytest.mark.parametrize("url", ["memory://?impl=rust", "memory://?impl=python"])
async def test_close_fails_the_waiters_queued_through_the_handle(url: str) -> None:
    async with microstd.sync.open(url.replace("://", "://lifecycle-waiters")) as other:
        locks = microstd.sync.open(url.replace("://", "://lifecycle-waiters"))
        holder = await other.acquire("busy", ttl=30.0)
        waiter = asyncio.ensure_future(locks.acquire("busy", ttl=1.0))
        deadline = asyncio.get_running_loop().time() + 10.0
        while not waiter.done() and other._cores.locks.waiting("busy") != 1:  # type: ignore[attr-defined]
            assert asyncio.get_running_loop().time() < deadline, "the waiter never queued"
            await asyncio.sleep(0.01)
        await locks.close()
        with pytest.raises(Closed):
            await asyncio.wait_for(waiter, 10.0)
        # The queue is left clean: the holder's release hands the lock to nobody stale.
        await holder.release()
        lease = await other.acquire("busy", ttl=1.0, wait=5.0)
        await lease.release()


def _shared(url: str, name: str) -> str:
    """The URL of a second handle on the same locks: a named instance for memory://."""
    return url.replace("memory://", f"memory://{name}") if url.startswith("memory://") else url


async def test_close_resigns_the_leaderships_won_through_the_handle(locks_url: str) -> None:
    url = _shared(locks_url, "lifecycle-elect")
    async with microstd.sync.open(url) as other:
        locks = microstd.sync.open(url)
        await locks.connect()
        leadership = await locks.elect("job-close", candidate="a", ttl=5.0)
        assert await other.leader("job-close") == "a"
        await locks.close()
        await asyncio.wait_for(leadership.lost.wait(), 10.0)
        assert await other.leader("job-close") is None
        successor = await other.elect("job-close", candidate="b", ttl=5.0, wait=5.0)
        await successor.resign()


def test_close_resigns_the_leaderships_won_through_the_handle_blocking(locks_url: str) -> None:
    url = _shared(locks_url, "lifecycle-elect-sync")
    with microstd.sync.open_sync(url) as other:
        locks = microstd.sync.open_sync(url)
        leadership = locks.elect("job-close-sync", candidate="a", ttl=5.0)
        assert other.leader("job-close-sync") == "a"
        locks.close()
        assert leadership.lost.wait(10.0)
        assert other.leader("job-close-sync") is None


@pytest.fixture(params=list(BROKER_BACKENDS))
def broker_url(request: pytest.FixtureRequest) -> str:
    return BROKER_BACKENDS[request.param](request)


async def test_broker(broker_url: str) -> None:
    broker = microstd.broker.open(broker_url)
    async with broker:
        await broker.publish("t.x", b"1")
    assert broker.closed
    await broker.close()
    await _refused(
        broker.connect,
        lambda: broker.publish("t.x", b"1"),
        lambda: broker.subscribe("t.>", print),
    )


def test_broker_blocking(broker_url: str) -> None:
    broker = microstd.broker.open_sync(broker_url)
    with broker:
        broker.publish("t.x", b"1")
    assert broker.closed
    broker.close()
    _refused_sync(
        broker.connect,
        lambda: broker.publish("t.x", b"1"),
        lambda: broker.subscribe("t.>", print),
    )


@pytest.fixture(params=list(REGISTRY_BACKENDS))
def registry_url(request: pytest.FixtureRequest) -> str:
    return REGISTRY_BACKENDS[request.param](request)


async def test_registry(registry_url: str) -> None:
    registry = microstd.registry.open(registry_url)
    async with registry:
        await registry.register(_RECORD, ttl=5.0)
    assert registry.closed
    await registry.close()
    await _refused(
        registry.connect,
        lambda: registry.register(_RECORD, ttl=5.0),
        lambda: registry.deregister(_RECORD),
        lambda: registry.lookup("greeter"),
        registry.list_services,
        lambda: _first(registry.watch("greeter")),
    )


def test_registry_blocking(registry_url: str) -> None:
    registry = microstd.registry.open_sync(registry_url)
    with registry:
        registry.register(_RECORD, ttl=5.0)
    assert registry.closed
    registry.close()
    _refused_sync(
        registry.connect,
        lambda: registry.register(_RECORD, ttl=5.0),
        lambda: registry.lookup("greeter"),
        registry.list_services,
    )


async def test_client_and_service() -> None:
    svc = microstd.Service("lifecycle", registry="memory://lifecycle-rpc")

    @svc.handler("Life.Ping")
    async def ping(req: dict[str, Any]) -> dict[str, Any]:
        return req

    async with svc, microstd.Client(registry="memory://lifecycle-rpc") as client:
        assert await client.call("lifecycle", "Life.Ping", {"a": 1}) == {"a": 1}
    assert client.closed
    assert svc.closed
    await client.close()
    await svc.stop()
    await _refused(
        client.connect,
        lambda: client.call("lifecycle", "Life.Ping", {}),
        svc.start,
        svc.connect,
    )


async def test_registry_watch_ends_on_close(registry_url: str) -> None:
    registry = microstd.registry.open(registry_url)
    await registry.connect()
    events = registry.watch("greeter")
    started = asyncio.ensure_future(_first(events))
    # Readiness: register new nodes until the watch reports one (it reports only
    # changes after it took its starting view).
    for attempt in range(100):
        node = Node(f"n{attempt}", "127.0.0.1:9000")
        await registry.register(Service("greeter", "1.0", [node]), ttl=30.0)
        done, _ = await asyncio.wait({started}, timeout=0.2)
        if done:
            break
    assert started.done(), "the watch never reported a change"
    pending = asyncio.ensure_future(_first(events))
    await registry.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 10.0)
