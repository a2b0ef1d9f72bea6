"""Lock safety under stalls, on this project's backends (Rust core, pure twin,
Redis, etcd): the generic locks contract is microstd.testing's suite
(test_sync_suite.py); these tests read each backend's own state to know a
waiter is queued."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from microstd import sync
from microstd.errors import LockTimeout
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
