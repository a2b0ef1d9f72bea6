"""Redis with Sentinel (one master, one replica, three Sentinels) losing its master
in the middle of a workload, through ``redis+sentinel://`` URLs.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
Replication is asynchronous: writes the master acknowledged just before it died
may be missing on the promoted replica, so these tests do not claim those
writes survive; they claim what holds anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

import microstd.broker
import microstd.store
import microstd.sync
from faults._support import FAST, RECOVER, eventually, never_hangs
from faults.cluster import _failover
from faults.cluster._clusters import SentinelCluster
from faults.cluster._workload import (
    WRITES,
    LockTurns,
    check_writes_through_failover,
    follow_reloads,
    greeter,
    node_ids,
    numbered_writes,
    subscription_through,
    unique,
    wait_for,
    write_until_applied,
)
from microstd.errors import (
    ConfigError,
    ConnectionFailed,
)


@pytest.mark.parametrize("scheme", ["redis+sentinel", "redis-sentinel", "sentinel"])
async def test_every_spelling_reaches_the_master(
    sentinel_cluster: SentinelCluster, scheme: str
) -> None:
    """The usual spellings of the Sentinel scheme all name the master."""
    url = sentinel_cluster.url(query=f"prefix={unique('sp')}", scheme=scheme)
    async with microstd.store.open(url, **FAST) as store:
        await store.write("k", scheme)
        assert (await store.read("k")).value == scheme


async def test_store_finds_the_new_master_and_revisions_keep_rising(
    sentinel_cluster: SentinelCluster,
) -> None:
    """Store: the master is killed mid-workload; calls fail fast until the
    Sentinels promote the replica, then the same store writes to the new master
    (retries of ConnectionFailed complete the workload); revisions keep rising
    across the failover (seeded from the server clock), and every write
    acknowledged after the failover reads back."""
    url = sentinel_cluster.url(query=f"prefix={unique('ha')}:")
    async with microstd.store.open(url, **FAST) as store:
        for _ in range(_failover.rounds(2)):
            prefix = unique("r")
            kill_at = WRITES // 3
            outcome = await _failover.through_failover(
                numbered_writes(store, prefix),
                total=WRITES,
                kill_at=kill_at,
                kill=sentinel_cluster.kill_master,
            )
            _failover.record(
                "redis sentinel",
                "store write (master killed)",
                outcome.failover,
                outcome.failures,
            )
            _, lost = await check_writes_through_failover(store, prefix, outcome, kill_at=kill_at)
            _failover.note(
                f"redis sentinel: {lost} of {kill_at} writes acknowledged"
                " before the master was killed were missing after the failover"
            )
            sentinel_cluster.heal()


async def test_subscriptions_move_to_the_new_master(sentinel_cluster: SentinelCluster) -> None:
    """Broker: the master is killed; the subscription reports the loss, subscribes
    again on the new master by itself, reports the return, and receives what is
    published afterwards (what was published during the failover is lost: pub/sub
    is at most once)."""
    got, seconds = await subscription_through(
        sentinel_cluster.url(), unique("ha."), sentinel_cluster.kill_master
    )
    _failover.record("redis sentinel", "core subscription (master killed)", seconds)
    assert got.reported_loss_and_return(), got.events


#: Lease length of the lock tests (seconds): short, so a lost lock frees soon.
TTL = 1.0


async def test_fencing_tokens_keep_rising_across_a_failover(
    sentinel_cluster: SentinelCluster,
) -> None:
    """Locks: two clients take turns holding one lock, each writing its token to
    a fenced log as it starts and ends, while the master is killed. Tokens keep
    rising in grant order across the failover (the new master seeds them from
    its clock: the same host's here, see docs/guarantees.md on skew), so the
    fenced log accepts every new holder's first write and refuses only a
    superseded holder. Mutual exclusion itself is not claimed across the
    failover: a lock the replica had not received is free on the new master."""
    url = sentinel_cluster.url(query="timeout=1")
    turns = LockTurns(unique("lock"), ttl=TTL, wait=2.0, steps=2, step=0.02)
    grants = turns.grants
    async with microstd.sync.open(url) as a, microstd.sync.open(url) as b:
        tasks = [asyncio.create_task(turns.take_turns(x, who)) for x, who in ((a, "a"), (b, "b"))]
        try:
            await wait_for(lambda: len(grants) >= 10, "grants before the kill")
            sentinel_cluster.kill_master()
            killed = time.monotonic()
            before = len(grants)
            await wait_for(lambda: len(grants) >= before + 10, "grants after the kill")
        finally:
            turns.stop.set()
            await asyncio.gather(*tasks)
    first_after = min(t for t, _, _ in grants[before:])
    _failover.record("redis sentinel", "lock acquire (master killed)", first_after - killed)
    turns.assert_tokens_rose(distinct=True)


async def test_registry_finds_the_new_master_and_heartbeats_restore_registrations(
    sentinel_cluster: SentinelCluster,
) -> None:
    """Registry: a running `microstd.Service` (TTL 3 s, heartbeat every second)
    and a registry registering nodes, while the master is killed. Registration
    goes on on the new master after retries (the failover cost recorded), and
    every node registered after the failover is found. Replication is
    asynchronous: a registration the old master acknowledged just before it
    died may be missing on the new one; the service's next heartbeat writes
    its own back. That is checked directly: the service's record is removed
    from the new master (as the lost write would be) and is found again
    through the heartbeat. Nodes registered once before the kill with no
    heartbeat are not claimed (their count is noted)."""
    import microstd
    import microstd.registry

    url = sentinel_cluster.url(query=f"prefix={unique('reg')}:&timeout=1&connect_timeout=1")
    total, kill_at = 20, 5
    svc = microstd.Service(unique("hb"), registry=url, ttl=3.0, interval=1.0)
    async with svc, microstd.registry.open(url) as registry:
        node = svc.server.node_id

        async def register(i: int) -> None:
            await registry.register(greeter(f"n{i}"), ttl=60)

        outcome = await _failover.through_failover(
            register, total=total, kill_at=kill_at, kill=sentinel_cluster.kill_master, pause=0.02
        )
        _failover.record(
            "redis sentinel",
            "registry register (master killed)",
            outcome.failover,
            outcome.failures,
        )
        found = await eventually(lambda: node_ids(registry))
        after = {f"n{i}" for i in range(kill_at, total) if i not in outcome.ambiguous}
        assert after <= found, sorted(after - found)
        before = {f"n{i}" for i in range(kill_at)}
        _failover.note(
            f"redis sentinel: {len(before - found)} of {kill_at} registrations acknowledged"
            " before the master was killed were missing after the failover"
        )

        # The service's heartbeat goes on against the new master...
        await _wait_for_async(
            lambda: node_ids(registry, svc.name), lambda got: node in got, "the service"
        )
        # ...and writes a lost registration back: remove it as the lost write would be.
        await eventually(lambda: registry.deregister(svc.record()))
        removed = time.monotonic()
        await _wait_for_async(
            lambda: node_ids(registry, svc.name),
            lambda got: node in got,
            "the heartbeat re-registering",
        )
        _failover.note(
            f"redis sentinel: a lost registration was back {time.monotonic() - removed:.2f} s"
            " after its removal (heartbeat every 1 s)"
        )


async def _wait_for_async(read: Any, check: Any, what: str, seconds: float = RECOVER) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(ConnectionFailed):
            if check(await never_hangs(read())):
                return
        assert time.monotonic() < deadline, f"{what}: not within {seconds}s"
        await asyncio.sleep(0.05)


async def test_config_reloads_from_the_new_master(sentinel_cluster: SentinelCluster) -> None:
    """Config source `config.redis` on the Sentinel URL, hot reloading (polling):
    the master is killed; the reads that fail meanwhile go to `on_error` as
    `ConfigError` (their count noted), and a change written to the new master
    after the failover is applied (the time from the kill recorded)."""
    from microstd import config
    from microstd._engines import redis as engine

    url = sentinel_cluster.url(query="timeout=1&connect_timeout=1")
    key = unique("cfg")
    writer = await engine.acquire(engine.RedisEndpoint.from_url(url)[0])

    async def put(value: str) -> None:
        with writer.errors("test write"):
            await writer.client.hset(key, "db.host", value)

    try:
        await eventually(lambda: put("v0"))
        cfg = await config.load_async(sources=[config.redis(url, key, poll_interval=0.2)])
        assert cfg.value == {"db": {"host": "v0"}}
        errors: list[BaseException] = []
        cfg.on_error(errors.append)

        task = asyncio.create_task(follow_reloads(cfg))
        try:
            await write_until_applied(cfg, "v1", put)
            sentinel_cluster.kill_master()
            start = time.monotonic()
            await write_until_applied(cfg, "v2", put)
            _failover.record(
                "redis sentinel", "config reload (master killed)", time.monotonic() - start
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert cfg.value == {"db": {"host": "v2"}}
        assert all(isinstance(e, ConfigError) for e in errors), errors
        _failover.note(f"redis sentinel: {len(errors)} config reload(s) failed during the failover")
    finally:
        await engine.release(writer)
