"""The locks contract (DESIGN.md, "sync"), on the async and the blocking surface.

Fixtures: `locks`, `slocks`, `sync_target` (microstd.testing.fixtures); every
handle of one target shares the same locks. microstd runs it on each of its
own backends (tests/contract), a plugin author on theirs
(`pytest --microstd-sync=URL`).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

from microstd.errors import Closed, LockLost, LockTimeout
from microstd.sync import Locks, SyncLocks
from microstd.testing._marks import mark_async_tests
from microstd.testing.tables import BAD_LOCK_NAMES, BAD_TTLS, BAD_WAITS, NO_TTL, ids, raises
from microstd.testing.targets import SyncTarget


def _name() -> str:
    return f"lock-{uuid.uuid4().hex[:8]}"


async def test_acquire_release_and_tokens_increase(locks: Locks) -> None:
    name = _name()
    first = await locks.acquire(name, ttl=10.0)
    assert first.name == name
    assert first.expires_at > time.time()
    with pytest.raises(LockTimeout) as info:
        await locks.acquire(name, ttl=10.0, wait=0)
    assert isinstance(info.value, TimeoutError)
    await first.release()
    second = await locks.acquire(name, ttl=10.0, wait=0)
    assert second.token > first.token
    await second.release()


async def test_release_or_refresh_of_a_released_lease_raises_lock_lost(locks: Locks) -> None:
    lease = await locks.acquire(_name(), ttl=10.0)
    await lease.refresh()
    await lease.release()
    with pytest.raises(LockLost):
        await lease.release()
    with pytest.raises(LockLost):
        await lease.refresh()


async def test_lock_context_manager_holds_for_the_block(locks: Locks) -> None:
    name = _name()
    async with locks.lock(name, ttl=10.0, wait=1.0) as lease:
        with pytest.raises(LockTimeout):
            await locks.acquire(name, ttl=10.0, wait=0)
    again = await locks.acquire(name, ttl=10.0, wait=0)
    assert again.token > lease.token
    await again.release()


async def test_wait_runs_out_with_lock_timeout(locks: Locks) -> None:
    name = _name()
    held = await locks.acquire(name, ttl=10.0)
    with pytest.raises(LockTimeout):
        await locks.acquire(name, ttl=10.0, wait=0.2)
    await held.release()
    # The timed-out waiter left no trace: the lock is free at once.
    await (await locks.acquire(name, ttl=10.0, wait=0)).release()


async def test_waiter_gets_the_lock_when_released(locks: Locks) -> None:
    name = _name()
    held = await locks.acquire(name, ttl=10.0)
    waiter = asyncio.create_task(locks.acquire(name, ttl=10.0, wait=10.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await held.release()
    got = await asyncio.wait_for(waiter, 10.0)
    assert got.token > held.token
    await got.release()


async def test_expired_lease_lets_the_next_waiter_in(locks: Locks, sync_target: SyncTarget) -> None:
    name = _name()
    late = await locks.acquire(name, ttl=sync_target.short_ttl)
    nxt = await locks.acquire(name, ttl=10.0, wait=sync_target.short_ttl + 5.0)
    assert nxt.token > late.token
    with pytest.raises(LockLost):
        await late.refresh()
    with pytest.raises(LockLost):
        await late.release()
    # The late holder's release did not free the new holder's lock.
    with pytest.raises(LockTimeout):
        await locks.acquire(name, ttl=10.0, wait=0)
    await nxt.release()


async def test_refresh_extends_the_lease(locks: Locks, sync_target: SyncTarget) -> None:
    name = _name()
    short = sync_target.short_ttl
    lease = await locks.acquire(name, ttl=short)
    await lease.refresh(ttl=30.0)
    assert lease.ttl >= 30.0
    await asyncio.sleep(short + 0.3)
    with pytest.raises(LockTimeout):
        await locks.acquire(name, ttl=10.0, wait=0)
    await lease.release()


async def test_cancelled_waiter_leaves_the_queue(locks: Locks) -> None:
    name = _name()
    held = await locks.acquire(name, ttl=10.0)
    waiter = asyncio.create_task(locks.acquire(name, ttl=10.0))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await held.release()
    again = await locks.acquire(name, ttl=10.0, wait=2.0)
    await again.release()


async def test_waiters_are_served_in_arrival_order(locks: Locks, sync_target: SyncTarget) -> None:
    if not sync_target.fifo:
        pytest.skip("this lock service does not promise first come, first served")
    name = _name()
    held = await locks.acquire(name, ttl=10.0)
    order: list[int] = []

    async def wait_turn(i: int) -> None:
        async with locks.lock(name, ttl=10.0, wait=10.0):
            order.append(i)

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(wait_turn(i)))
        await asyncio.sleep(0.1)
    await held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 10.0)
    assert order == [0, 1, 2]


async def test_election_and_failover(locks: Locks, sync_target: SyncTarget) -> None:
    name = _name()
    assert await locks.leader(name) is None
    first = await locks.elect(name, candidate="node-1", ttl=sync_target.short_ttl * 2)
    assert first.candidate == "node-1"
    assert await locks.leader(name) == "node-1"
    with pytest.raises(LockTimeout):
        await locks.elect(name, candidate="node-2", ttl=5.0, wait=0.2)
    # The background renewal keeps the leadership past its ttl.
    await asyncio.sleep(sync_target.short_ttl * 2 + 0.3)
    assert not first.lost.is_set()
    assert await locks.leader(name) == "node-1"
    second = asyncio.create_task(locks.elect(name, candidate="node-2", ttl=5.0))
    await asyncio.sleep(0.1)
    await first.resign()
    await asyncio.wait_for(first.lost.wait(), 5.0)
    now = await asyncio.wait_for(second, 10.0)
    assert now.token > first.token
    assert await locks.leader(name) == "node-2"
    await now.resign()
    await now.lost
    assert await locks.leader(name) is None


def test_sync_surface(slocks: SyncLocks) -> None:
    name = _name()
    with slocks.lock(name, ttl=10.0, wait=1.0) as lease, pytest.raises(LockTimeout):
        slocks.acquire(name, ttl=10.0, wait=0)
    again = slocks.acquire(name, ttl=10.0, wait=0)
    assert again.token > lease.token
    again.refresh(ttl=20.0)
    assert again.ttl >= 20.0
    again.release()
    with pytest.raises(LockLost):
        again.release()


def test_sync_waiter_thread_gets_the_lock(slocks: SyncLocks) -> None:
    name = _name()
    held = slocks.acquire(name, ttl=10.0)
    tokens: list[int] = []

    def waiter() -> None:
        with slocks.lock(name, ttl=10.0, wait=10.0) as lease:
            tokens.append(lease.token)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    assert tokens == []
    held.release()
    t.join(10)
    assert tokens
    assert tokens[0] > held.token


def test_sync_expiry_and_election(slocks: SyncLocks, sync_target: SyncTarget) -> None:
    name = _name()
    late = slocks.acquire(name, ttl=sync_target.short_ttl)
    nxt = slocks.acquire(name, ttl=10.0, wait=sync_target.short_ttl + 5.0)
    assert nxt.token > late.token
    with pytest.raises(LockLost):
        late.release()
    nxt.release()
    leadership = slocks.elect(name, candidate="a", ttl=sync_target.short_ttl * 2)
    assert slocks.leader(name) == "a"
    time.sleep(sync_target.short_ttl * 2 + 0.3)
    assert not leadership.lost.is_set()
    leadership.resign()
    assert leadership.lost.wait(5.0)
    assert slocks.leader(name) is None


# ---- one table of bad arguments (microstd.testing.tables) -----------------------

_LOCK_TTLS = [*BAD_TTLS, NO_TTL]


@pytest.mark.parametrize(("name", "cls", "message"), BAD_LOCK_NAMES, ids=ids(BAD_LOCK_NAMES))
async def test_bad_names_raise_the_shared_error(
    locks: Locks, name: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await locks.acquire(name, ttl=1.0)
    with raises(cls, message):
        await locks.elect(name, candidate="c", ttl=1.0, wait=0)


@pytest.mark.parametrize(("ttl", "cls", "message"), _LOCK_TTLS, ids=ids(_LOCK_TTLS))
async def test_bad_ttls_raise_the_shared_error(
    locks: Locks, ttl: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await locks.acquire(_name(), ttl=ttl)
    with raises(cls, message):
        await locks.elect(_name(), candidate="c", ttl=ttl, wait=0)
    lease = await locks.acquire(_name(), ttl=5.0)
    try:
        if ttl is not None:  # refresh(None) keeps the current ttl
            with raises(cls, message):
                await lease.refresh(ttl)
    finally:
        await lease.release()


@pytest.mark.parametrize(("wait", "cls", "message"), BAD_WAITS, ids=ids(BAD_WAITS))
async def test_bad_waits_raise_the_shared_error(
    locks: Locks, wait: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await locks.acquire(_name(), ttl=1.0, wait=wait)


@pytest.mark.parametrize(("name", "cls", "message"), BAD_LOCK_NAMES, ids=ids(BAD_LOCK_NAMES))
def test_sync_bad_names_raise_the_shared_error(
    slocks: SyncLocks, name: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        slocks.acquire(name, ttl=1.0)
    with raises(cls, message), slocks.lock(name, ttl=1.0):
        pass


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=ids(BAD_TTLS))
def test_sync_bad_ttls_raise_the_shared_error(
    slocks: SyncLocks, ttl: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        slocks.acquire(_name(), ttl=ttl)
    with raises(cls, message), slocks.lock(_name(), ttl=ttl):
        pass
    with slocks.lock(_name(), ttl=5.0) as lease, raises(cls, message):
        lease.refresh(ttl)


@pytest.mark.parametrize(("wait", "cls", "message"), BAD_WAITS, ids=ids(BAD_WAITS))
def test_sync_bad_waits_raise_the_shared_error(
    slocks: SyncLocks, wait: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        slocks.acquire(_name(), ttl=1.0, wait=wait)
    with raises(cls, message), slocks.lock(_name(), ttl=1.0, wait=wait):
        pass


# ---- close() means closed ------------------------------------------------------


async def test_close_means_closed(sync_target: SyncTarget) -> None:
    locks = sync_target.open()
    async with locks:
        await (await locks.acquire(_name(), ttl=5.0)).release()
    assert locks.closed
    await locks.close()  # idempotent

    async def enter_lock() -> None:
        async with locks.lock(_name(), ttl=1.0):
            pass

    for call in (
        locks.connect,
        lambda: locks.acquire(_name(), ttl=1.0),
        lambda: locks.acquire(_name(), ttl=1.0, wait=0),
        enter_lock,
        lambda: locks.elect(_name(), candidate="c", ttl=1.0),
        lambda: locks.leader(_name()),
    ):
        with pytest.raises(Closed, match="is closed"):
            await call()


def test_sync_close_means_closed(sync_target: SyncTarget) -> None:
    locks = sync_target.open_sync()
    with locks:
        locks.acquire(_name(), ttl=5.0).release()
    assert locks.closed
    locks.close()

    def enter_lock() -> None:
        with locks.lock(_name(), ttl=1.0):
            pass

    for call in (
        locks.connect,
        lambda: locks.acquire(_name(), ttl=1.0),
        enter_lock,
        lambda: locks.elect(_name(), candidate="c", ttl=1.0),
        lambda: locks.leader(_name()),
    ):
        with pytest.raises(Closed, match="is closed"):
            call()


async def test_close_resigns_the_leaderships_won_through_the_handle(
    sync_target: SyncTarget,
) -> None:
    name = _name()
    async with sync_target.open() as other:
        locks = sync_target.open()
        await locks.connect()
        leadership = await locks.elect(name, candidate="a", ttl=5.0)
        assert await other.leader(name) == "a"
        await locks.close()
        await asyncio.wait_for(leadership.lost.wait(), 10.0)
        assert await other.leader(name) is None
        successor = await other.elect(name, candidate="b", ttl=5.0, wait=5.0)
        await successor.resign()


def test_sync_close_resigns_the_leaderships_won_through_the_handle(
    sync_target: SyncTarget,
) -> None:
    name = _name()
    with sync_target.open_sync() as other:
        locks = sync_target.open_sync()
        leadership = locks.elect(name, candidate="a", ttl=5.0)
        assert other.leader(name) == "a"
        locks.close()
        assert leadership.lost.wait(10.0)
        assert other.leader(name) is None


mark_async_tests(globals())
