"""Redis Cluster (three masters, three replicas) losing the master of a store's or a
broker's hash slot in the middle of a workload, through ``redis+cluster://`` URLs.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
Replication is asynchronous: writes the master acknowledged just before it died
may be missing on the promoted replica, so these tests do not claim those
writes survive; they claim what holds anyway. A store (or a broker's keys) is
one hash slot: killing that slot's master is the failure that matters to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import microstd.broker
import microstd.store
import microstd.sync
from faults._support import FAST, RECOVER, eventually, wait_until
from faults.cluster import _failover
from faults.cluster._clusters import RedisCluster
from faults.cluster._failover import Outcome
from faults.cluster._workload import (
    WRITES,
    LockTurns,
    check_writes_through_failover,
    greeter,
    node_ids,
    numbered_writes,
    subscription_through,
    unique,
)
from microstd._engines.redis_cluster import hash_tag
from microstd.broker import Message


async def _kill_slot_master_during(
    cluster: RedisCluster,
    prefix: str,
    op: Callable[[int], Awaitable[object]],
    whose: str,
    what: str,
    total: int = WRITES,
    kill_at: int = WRITES // 3,
) -> Outcome:
    """`op` run through a failover (`_failover.through_failover`) in which the master
    of `prefix`'s hash slot is killed; the cost recorded as `what`. The kill must
    have made an attempt fail (it reached the `whose` master) and a replica must
    serve the slot now."""
    victim = cluster.master_of(hash_tag(prefix))
    outcome = await _failover.through_failover(
        op, total=total, kill_at=kill_at, kill=lambda: cluster.kill(victim)
    )
    _failover.record(
        "redis cluster", f"{what} (slot's master killed)", outcome.failover, outcome.failures
    )
    assert outcome.failures > 0, f"the kill did not reach the {whose}'s master"
    assert cluster.master_of(hash_tag(prefix)) != victim
    return outcome


async def test_store_follows_the_promoted_replica_and_revisions_keep_rising(
    redis_cluster: RedisCluster,
) -> None:
    """Store: the master of the store's slot is killed mid-workload; calls fail fast
    until the cluster promotes its replica, then the same store writes to the new
    master (the client reloads the slot map; retries of ConnectionFailed complete
    the workload); revisions keep rising across the failover, and every write
    acknowledged after the failover reads back, through read_many and list."""
    prefix = f"{unique('hc')}:"
    async with microstd.store.open(redis_cluster.url(), prefix=prefix, **FAST) as store:
        for _ in range(_failover.rounds(redis_cluster.masters)):
            keys = unique("r")
            kill_at = WRITES // 3
            outcome = await _kill_slot_master_during(
                redis_cluster, prefix, numbered_writes(store, keys), "store", "store write"
            )
            after, lost = await check_writes_through_failover(store, keys, outcome, kill_at=kill_at)
            listed = set(await store.list(prefix=keys))
            assert set(after) <= listed
            _failover.note(
                f"redis cluster: {lost} of {kill_at} store writes acknowledged"
                " before the slot's master was killed were missing after the failover"
            )
            redis_cluster.heal()


async def test_a_subscription_moves_off_its_dead_node(redis_cluster: RedisCluster) -> None:
    """Core broker: the node a subscription's pub/sub connection is on (the master
    of its channel's slot) is killed; the subscription reports the loss,
    subscribes again on a node of the new slot map by itself, reports the return,
    and receives what is published afterwards (classic PUBLISH reaches every
    node; what was published during the move is lost: pub/sub is at most once)."""
    topic = unique("hc.")
    got, seconds = await subscription_through(
        redis_cluster.url(), topic, lambda: redis_cluster.kill(redis_cluster.master_of(topic))
    )
    _failover.record("redis cluster", "core subscription (its node killed)", seconds)
    assert got.reported_loss_and_return(), got.events


async def test_durable_messages_published_after_the_failover_are_all_delivered(
    redis_cluster: RedisCluster,
) -> None:
    """Durable broker: the master of the broker's slot (its streams) is killed while
    messages are published to a durable subscription; publishes fail fast until
    the replica is promoted, retries complete them, and every message acknowledged
    after the failover is delivered (at least once). Messages acknowledged just
    before the kill may be lost with the master (asynchronous replication)."""
    prefix = f"{unique('hd')}:"
    url = redis_cluster.url(f"prefix={prefix}")
    topic, durable = unique("hd."), unique("d")
    seen: set[int] = set()

    def handle(message: Message) -> None:
        body = message.decode()
        assert isinstance(body, int)
        seen.add(body)

    async with (
        microstd.broker.open(url, **FAST) as publisher,
        microstd.broker.open(url, **FAST) as consumer,
    ):
        await consumer.subscribe(topic, handle, durable=durable, ack_wait=1.0)
        # The durable (its stream's definition and group) must be on the replica
        # to survive the kill; one made just before it is made again by its
        # subscriber (test_durable_faults.py), but what is published until then
        # is not retained.
        redis_cluster.wait_replicated(hash_tag(prefix))

        async def publish(i: int) -> None:
            await publisher.publish(topic, i)

        kill_at = WRITES // 3
        outcome = await _kill_slot_master_during(
            redis_cluster, prefix, publish, "broker", "durable publish"
        )
        after = {i for i in range(kill_at, WRITES) if i not in outcome.ambiguous}
        await wait_until(lambda: after <= seen)
        early = set(range(kill_at))
        _failover.note(
            f"redis cluster: {len(early - seen)} of {kill_at} durable messages acknowledged"
            " before the slot's master was killed were not delivered"
        )


#: Lease length of the lock test (seconds): short, so a lost lock frees soon.
TTL = 1.0


async def test_fencing_tokens_keep_rising_across_a_failover(redis_cluster: RedisCluster) -> None:
    """Locks: two clients take turns holding one lock, each writing its token to a
    fenced log as it starts and ends, while the master of the locks' slot is
    killed. Acquisitions go on once the replica is promoted; tokens keep rising
    in grant order across the failover (the new master seeds them from its
    clock: the same host's here, see docs/guarantees.md on skew), so the fenced
    log accepts every new holder's first write. Mutual exclusion itself is not
    claimed across the failover: a lock the replica had not received is free on
    the new master."""
    prefix = f"{unique('hl')}:"
    url = redis_cluster.url(f"prefix={prefix}&timeout=1&connect_timeout=1")
    turns = LockTurns(unique("lock"), ttl=TTL, wait=2.0, steps=2, step=0.02)
    grants = turns.grants
    async with microstd.sync.open(url) as a, microstd.sync.open(url) as b:
        tasks = [asyncio.create_task(turns.take_turns(x, who)) for x, who in ((a, "a"), (b, "b"))]
        try:
            await wait_until(lambda: len(grants) >= 10, 2 * RECOVER)
            victim = redis_cluster.master_of(hash_tag(prefix))
            redis_cluster.kill(victim)
            killed = time.monotonic()
            before = len(grants)
            await wait_until(lambda: len(grants) >= before + 10, 2 * RECOVER)
        finally:
            turns.stop.set()
            await asyncio.gather(*tasks)
    assert redis_cluster.master_of(hash_tag(prefix)) != victim
    # The first grant after the first failed acquire since the kill (a grant whose
    # reply was already on its way when the master died is not the failover's).
    since = min((t for t in turns.failed if t >= killed), default=killed)
    first_after = min(t for t, _, _ in grants[before:] if t >= since)
    _failover.record("redis cluster", "lock acquire (slot's master killed)", first_after - killed)
    turns.assert_tokens_rose(distinct=True)


async def test_registrations_after_the_failover_are_found(redis_cluster: RedisCluster) -> None:
    """Registry: the master of the registry's hash slot is killed while a registry
    registers nodes; registration goes on on the new master after retries, and
    every node registered after the failover is found by a lookup."""
    import microstd.registry

    prefix = f"{unique('hr')}:"
    url = redis_cluster.url(f"prefix={prefix}")
    total, kill_at = 20, 5
    async with microstd.registry.open(url, **FAST) as registry:

        async def register(i: int) -> None:
            await registry.register(greeter(f"n{i}"), ttl=60)

        outcome = await _kill_slot_master_during(
            redis_cluster, prefix, register, "registry", "registry register", total, kill_at
        )

        found = await eventually(lambda: node_ids(registry))
        after = {f"n{i}" for i in range(kill_at, total) if i not in outcome.ambiguous}
        assert after <= found, sorted(after - found)
        _failover.note(
            f"redis cluster: {len({f'n{i}' for i in range(kill_at)} - found)} of {kill_at}"
            " registrations acknowledged before the slot's master was killed were missing"
        )
