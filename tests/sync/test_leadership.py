"""`leadership.lost` is set when the lease behind a leadership is lost."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from microstd import sync
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
