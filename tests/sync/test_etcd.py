"""etcd specifics: a contender keeps its place (and its lease) however long it
waits, and no acquire or elect returns a lease that is not held."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from microstd import sync
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._etcdapi import EtcdAPI, b64, int_field, prefix_end

TTL = 2.0  # etcd's floor on a default server


async def _keys_since(api: EtcdAPI, prefix: str, revision: int) -> int:
    got = await api.call(
        "kv/range",
        {
            "key": b64(prefix),
            "range_end": prefix_end(prefix),
            "min_create_revision": str(revision),
            "count_only": True,
        },
    )
    return int_field(got, "count", default=0)


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 20.0
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_waiter_longer_than_its_ttl_keeps_its_place(etcd_url: str) -> None:
    """The issue's reproduction: a waiter's lease ran out while it waited, its key
    went with it, and both it and a later contender were handed the lock."""
    name = f"long-wait-{uuid.uuid4().hex[:8]}"
    prefix = f"microstd/lock/{name}/"
    api = EtcdAPI(etcd_url.replace("etcd://", "http://"))
    async with sync.open(etcd_url) as locks:
        try:
            first = await locks.acquire(name, ttl=30.0)
            start = int_field(await api.call("maintenance/status", {}), "header", "revision")
            second_task = asyncio.create_task(locks.acquire(name, ttl=TTL, wait=60.0))
            await _until(lambda: _keys_since(api, prefix, start + 1), "no second contender")
            # The second contender waits for longer than its own lease.
            await asyncio.sleep(2 * TTL + 1.5)
            mark = int_field(await api.call("maintenance/status", {}), "header", "revision")
            third_task = asyncio.create_task(locks.acquire(name, ttl=30.0, wait=60.0))
            await _until(lambda: _keys_since(api, prefix, mark + 1), "no third contender")
            await first.release()
            second = await asyncio.wait_for(second_task, 30.0)
            # The second contender holds the lock for real: its lease lives...
            await second.refresh()
            # ... and nobody else gets the lock while it does.
            with pytest.raises(LockTimeout):
                await locks.acquire(name, ttl=30.0, wait=0)
            assert not third_task.done()
            await second.release()
            third = await asyncio.wait_for(third_task, 30.0)
            assert third.token > second.token > first.token
            await third.release()
        finally:
            await api.close()


async def test_a_standby_longer_than_its_ttl_leads_alone(etcd_url: str) -> None:
    """The election form: a standby waited past its lease, then a third candidate
    came; when the leader resigns the standby leads and the third still waits."""
    name = f"long-standby-{uuid.uuid4().hex[:8]}"
    prefix = f"microstd/election/{name}/"
    api = EtcdAPI(etcd_url.replace("etcd://", "http://"))
    async with sync.open(etcd_url) as locks:
        try:
            leader = await locks.elect(name, candidate="a", ttl=TTL)
            start = int_field(await api.call("maintenance/status", {}), "header", "revision")
            standby_task = asyncio.create_task(locks.elect(name, "b", ttl=TTL, wait=60.0))
            await _until(lambda: _keys_since(api, prefix, start + 1), "no standby")
            await asyncio.sleep(2 * TTL + 1.5)
            mark = int_field(await api.call("maintenance/status", {}), "header", "revision")
            third_task = asyncio.create_task(locks.elect(name, "c", ttl=TTL, wait=60.0))
            await _until(lambda: _keys_since(api, prefix, mark + 1), "no third candidate")
            await leader.resign()
            standby = await asyncio.wait_for(standby_task, 30.0)
            assert await locks.leader(name) == "b"
            assert not standby.lost.is_set()
            assert not third_task.done()
            await standby.resign()
            third = await asyncio.wait_for(third_task, 30.0)
            assert await locks.leader(name) == "c"
            assert third.token > standby.token > leader.token
            await third.resign()
        finally:
            await api.close()


@pytest.mark.parametrize("revoke_fails", [False, True])
async def test_a_move_to_a_shorter_lease_whose_reply_is_lost_leaves_no_second_holder(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch, revoke_fails: bool
) -> None:
    """`refresh(ttl=...)` whose move txn was applied but answered with
    ConnectionFailed: the key sits on the new, short lease. The holder must not go
    on renewing the old lease and believing its old expiry."""
    name = f"lost-move-{uuid.uuid4().hex[:8]}"
    async with sync.open(etcd_url) as locks:
        lease = await locks.acquire(name, ttl=30.0)
        api = lease._api  # type: ignore[attr-defined]
        real_call = api.call

        async def applied_then_lost(path: str, body: dict[str, Any], **kw: Any) -> Any:
            if path == "kv/txn":
                await real_call(path, body, **kw)
                raise ConnectionFailed("reply lost (test)")
            if path == "lease/revoke" and revoke_fails:
                raise ConnectionFailed("revoke lost (test)")
            return await real_call(path, body, **kw)

        monkeypatch.setattr(api, "call", applied_then_lost)
        with pytest.raises(ConnectionFailed):
            await lease.refresh(ttl=TTL)
        monkeypatch.setattr(api, "call", real_call)
        # The holder believes no more than the short lease it may now be on...
        assert lease.expires_at <= time.time() + TTL
        # ... and does not renew the old lease as if the key were still on it.
        with pytest.raises(LockLost):
            await lease.refresh()
        # The lock is free (at once, or when the unrenewed short lease runs out).
        rival = await locks.acquire(name, ttl=30.0, wait=30.0)
        assert rival.token > lease.token
        await rival.release()
