"""The sync contract, run on every backend (Rust core, pure twin, Redis, etcd),
on both the async and the blocking surface."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from microstd import sync
from microstd.errors import InvalidKey, LockLost, LockTimeout
from microstd.sync import Locks, SyncLocks

BACKENDS = ["memory-rust", "memory-python", "redis", "etcd", "postgres"]
# Backends whose waiters are served strictly first come, first served.
FIFO_BACKENDS = ["memory-rust", "memory-python", "etcd"]
# etcd rounds a lease up to whole seconds, with a floor of about 2 s.
SHORT_TTL = {"etcd": 2.0}


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "memory-rust":
        return "memory://?impl=rust"
    if backend == "memory-python":
        return "memory://?impl=python"
    url: str = request.getfixturevalue(f"{backend}_url")
    return url


def _short(backend: str) -> float:
    return SHORT_TTL.get(backend, 0.3)


def _name() -> str:
    return f"lock-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def locks(request: pytest.FixtureRequest, backend: str) -> AsyncIterator[Locks]:
    async with sync.open(_url(request, backend)) as opened:
        yield opened


@pytest.fixture
def slocks(request: pytest.FixtureRequest, backend: str) -> Iterator[SyncLocks]:
    with sync.open_sync(_url(request, backend)) as opened:
        yield opened


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


async def test_expired_lease_lets_the_next_waiter_in(locks: Locks, backend: str) -> None:
    name = _name()
    late = await locks.acquire(name, ttl=_short(backend))
    nxt = await locks.acquire(name, ttl=10.0, wait=_short(backend) + 5.0)
    assert nxt.token > late.token
    with pytest.raises(LockLost):
        await late.refresh()
    with pytest.raises(LockLost):
        await late.release()
    # The late holder's release did not free the new holder's lock.
    with pytest.raises(LockTimeout):
        await locks.acquire(name, ttl=10.0, wait=0)
    await nxt.release()


async def test_refresh_extends_the_lease(locks: Locks, backend: str) -> None:
    name = _name()
    short = _short(backend)
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


@pytest.mark.parametrize("backend", FIFO_BACKENDS, indirect=True)
async def test_waiters_are_served_in_arrival_order(locks: Locks) -> None:
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


async def test_bad_input(locks: Locks) -> None:
    with pytest.raises(InvalidKey):
        await locks.acquire("", ttl=1.0)
    with pytest.raises(ValueError):
        await locks.acquire(_name(), ttl=0)
    with pytest.raises(ValueError):
        await locks.acquire(_name(), ttl=1.0, wait=-1)


async def test_election_and_failover(locks: Locks, backend: str) -> None:
    name = _name()
    assert await locks.leader(name) is None
    first = await locks.elect(name, candidate="node-1", ttl=_short(backend) * 2)
    assert first.candidate == "node-1"
    assert await locks.leader(name) == "node-1"
    with pytest.raises(LockTimeout):
        await locks.elect(name, candidate="node-2", ttl=5.0, wait=0.2)
    # The background renewal keeps the leadership past its ttl.
    await asyncio.sleep(_short(backend) * 2 + 0.3)
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


def test_sync_expiry_and_election(slocks: SyncLocks, backend: str) -> None:
    name = _name()
    late = slocks.acquire(name, ttl=_short(backend))
    nxt = slocks.acquire(name, ttl=10.0, wait=_short(backend) + 5.0)
    assert nxt.token > late.token
    with pytest.raises(LockLost):
        late.release()
    nxt.release()
    leadership = slocks.elect(name, candidate="a", ttl=_short(backend) * 2)
    assert slocks.leader(name) == "a"
    time.sleep(_short(backend) * 2 + 0.3)
    assert not leadership.lost.is_set()
    leadership.resign()
    assert leadership.lost.wait(5.0)
    assert slocks.leader(name) is None


# Extra stall beyond both leases, for the server to notice they ran out (etcd
# checks its leases every 500 ms and revokes them through its raft log).
STALL_SLACK = {"etcd": 2.0}


async def _queued(locks: Locks, backend: str, kind: str, name: str) -> None:
    """Return once a second contender for `name` is waiting (a readiness
    signal read from each backend's own state), so a stall hits a waiter."""
    deadline = time.monotonic() + 20.0
    while True:
        if backend.startswith("memory"):
            cores = locks._cores  # type: ignore[attr-defined]
            core = cores.locks if kind == "lock" else cores.elections
            ready = core.waiting(name) >= 1
        elif backend == "postgres":
            ready = locks.waiting(kind, name) >= 1  # type: ignore[attr-defined]
        elif backend == "redis":
            channel = locks._channel(f"microstd:{kind}:{name}")  # type: ignore[attr-defined]
            subs = await locks._client.pubsub_numsub(channel)  # type: ignore[attr-defined]
            ready = bool(subs) and int(subs[0][1]) >= 1
        else:
            from microstd.sync._etcdapi import b64, prefix_end

            prefix = f"microstd/{kind}/{name}/"
            got = await locks._api.call(  # type: ignore[attr-defined]
                "kv/range",
                {"key": b64(prefix), "range_end": prefix_end(prefix), "count_only": True},
            )
            ready = int(got.get("count", 0)) >= 2
        if ready:
            return
        assert time.monotonic() < deadline, "the second contender never started waiting"
        await asyncio.sleep(0.02)


def _stall_for(backend: str, holder_ttl: float, waiter_ttl: float) -> float:
    return holder_ttl + waiter_ttl + STALL_SLACK.get(backend, 0.5)


async def test_a_waiter_stalled_past_its_ttl_gets_a_live_lease(locks: Locks, backend: str) -> None:
    """A lease's expiry counts from when the waiter gets it: a waiter that could not
    run for longer than its ttl is never handed a lease that already ran out."""
    name = _name()
    short, waiter_ttl = _short(backend), max(_short(backend), 1.0)
    held = await locks.acquire(name, ttl=short)
    waiter = asyncio.create_task(locks.acquire(name, ttl=waiter_ttl, wait=60.0))
    await _queued(locks, backend, "lock", name)
    # The fault: the event loop stalls, so no task runs for longer than both leases.
    time.sleep(_stall_for(backend, short, waiter_ttl))  # noqa: ASYNC251
    lease = await asyncio.wait_for(waiter, 30.0)
    assert lease.token > held.token
    assert lease.expires_at > time.time()
    # Held for real: nobody else gets it, and it can be extended and released.
    with pytest.raises(LockTimeout):
        await locks.acquire(name, ttl=10.0, wait=0)
    await lease.refresh(ttl=10.0)
    await lease.release()


async def test_a_rival_elected_after_a_stall_leads(locks: Locks, backend: str) -> None:
    """The issue's reproduction: the leader's loop stalls for three leases, the waiting
    rival is elected, and it really leads (the old leader's `lost` is what fires)."""
    name = _name()
    short, waiter_ttl = _short(backend), max(_short(backend), 1.0)
    first = await locks.elect(name, candidate="a", ttl=short)
    rival = asyncio.create_task(locks.elect(name, candidate="b", ttl=waiter_ttl, wait=60.0))
    await _queued(locks, backend, "election", name)
    time.sleep(_stall_for(backend, short, waiter_ttl))  # noqa: ASYNC251
    second = await asyncio.wait_for(rival, 30.0)
    assert await locks.leader(name) == "b"
    assert second.token > first.token
    await asyncio.wait_for(first.lost.wait(), 10.0)
    assert not second.lost.is_set()
    assert await locks.leader(name) == "b"
    await second.resign()
    await first.resign()
    assert await locks.leader(name) is None
