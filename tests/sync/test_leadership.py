"""`leadership.lost` is set when the lease behind a leadership is lost."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from microstd import sync
from microstd.errors import ConnectionFailed
from microstd.sync import Lease
from microstd.sync._election import RenewingLeadership
from microstd.sync.memory import MemoryLocks, SyncMemoryLocks, _Cores


@pytest.mark.parametrize("impl", ["rust", "python"])
async def test_memory_leadership_lost_when_its_lease_goes(impl: str) -> None:
    cores = _Cores(impl)
    locks = MemoryLocks(cores)
    leadership = await locks.elect("svc", candidate="a", ttl=0.3)
    assert not leadership.lost.is_set()
    # Closing the elections core drops every lease: the next renewal finds it gone.
    cores.elections.close()
    await asyncio.wait_for(leadership.lost.wait(), 5.0)
    await leadership.resign()


@pytest.mark.parametrize("impl", ["rust", "python"])
def test_sync_memory_leadership_lost_when_its_lease_goes(impl: str) -> None:
    cores = _Cores(impl)
    locks = SyncMemoryLocks(cores)
    leadership = locks.elect("svc", candidate="a", ttl=0.3)
    cores.elections.close()
    assert leadership.lost.wait(5.0)
    leadership.resign()


async def test_redis_leadership_lost_when_its_key_is_taken_away(redis_url: str) -> None:
    async with sync.open(redis_url) as locks:
        leadership = await locks.elect("svc-lost", candidate="a", ttl=0.6)
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.delete("microstd:election:svc-lost")
        finally:
            await client.aclose()
        await asyncio.wait_for(leadership.lost.wait(), 5.0)
        assert await locks.leader("svc-lost") is None
        await leadership.resign()


async def test_etcd_leadership_lost_when_its_key_is_taken_away(etcd_url: str) -> None:
    from microstd.sync._etcdapi import EtcdAPI, b64, prefix_end

    async with sync.open(etcd_url) as locks:
        leadership = await locks.elect("svc-lost", candidate="a", ttl=2.0)
        api = EtcdAPI(etcd_url.replace("etcd://", "http://"))
        try:
            prefix = "microstd/election/svc-lost/"
            await api.call("kv/deleterange", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        finally:
            await api.close()
        await asyncio.wait_for(leadership.lost.wait(), 10.0)
        await leadership.resign()


class _FakeLease(Lease):
    """A lease whose server the test controls: `refresh` does what `behave` says."""

    def __init__(self, ttl: float, behave: str) -> None:
        self.name, self.owner, self.token = "svc", "a", 1
        self._ttl = ttl
        self._sent_at = time.monotonic()
        self.behave = behave
        self.refreshes = 0
        self.hung = asyncio.Event()

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def expires_at(self) -> float:
        return time.time() + self._ttl

    async def refresh(self, ttl: float | None = None) -> None:
        self.refreshes += 1
        if self.behave == "hang":
            self.hung.set()
            await asyncio.Event().wait()  # a frozen server: no reply, ever
        if self.behave == "flaky" and self.refreshes <= 2:
            raise ConnectionFailed("the server is briefly unreachable")
        if self.behave == "down":
            raise ConnectionFailed("the server is unreachable")

    async def release(self) -> None:
        pass


async def test_a_renewal_that_hangs_loses_leadership_at_the_local_expiry() -> None:
    lease = _FakeLease(0.6, "hang")
    leadership = RenewingLeadership(lease, "a")
    await asyncio.wait_for(lease.hung.wait(), 10.0)
    # No reply will come: the leadership ends on its own clock.
    await asyncio.wait_for(leadership.lost.wait(), 10.0)
    await leadership.resign()


async def test_a_server_down_for_good_loses_leadership_at_the_local_expiry() -> None:
    lease = _FakeLease(0.6, "down")
    leadership = RenewingLeadership(lease, "a")
    await asyncio.wait_for(leadership.lost.wait(), 10.0)
    # It kept trying until its time was up, not just once.
    assert lease.refreshes > 1
    await leadership.resign()


async def test_a_brief_outage_does_not_end_leadership() -> None:
    # Retries come every ttl/20: two failures fit well inside the lease.
    lease = _FakeLease(3.0, "flaky")
    leadership = RenewingLeadership(lease, "a")
    deadline = time.monotonic() + 20.0
    while lease.refreshes < 4:
        assert time.monotonic() < deadline, "the renewals stopped"
        assert not leadership.lost.is_set(), "two failed renewals ended the leadership"
        await asyncio.sleep(0.05)
    assert not leadership.lost.is_set()
    await leadership.resign()
    assert leadership.lost.is_set()
