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
import contextlib
import time
import uuid
from typing import Any

import microstd.broker
import microstd.store
import microstd.sync
from faults._locks import FencedLog, hold_in_steps
from faults._support import FAST, RECOVER, eventually, never_hangs, wait_until
from faults.cluster import _failover
from faults.cluster._clusters import RedisCluster
from microstd._engines.redis_cluster import hash_tag
from microstd.broker import Broker, Message
from microstd.errors import ConnectionFailed, ConnectionRestored, LockLost, LockTimeout

WRITES = 60


def _unique(what: str) -> str:
    return f"{what}{uuid.uuid4().hex[:8]}"


async def test_store_follows_the_promoted_replica_and_revisions_keep_rising(
    redis_cluster: RedisCluster,
) -> None:
    """Store: the master of the store's slot is killed mid-workload; calls fail fast
    until the cluster promotes its replica, then the same store writes to the new
    master (the client reloads the slot map; retries of ConnectionFailed complete
    the workload); revisions keep rising across the failover, and every write
    acknowledged after the failover reads back, through read_many and list."""
    prefix = f"{_unique('hc')}:"
    async with microstd.store.open(redis_cluster.url(), prefix=prefix, **FAST) as store:
        for _ in range(_failover.rounds(redis_cluster.masters)):
            keys = _unique("r")

            async def write(i: int, keys: str = keys) -> int:
                return int(await store.write(f"{keys}{i}", {"n": i}))

            victim = redis_cluster.master_of(hash_tag(prefix))
            kill_at = WRITES // 3
            outcome = await _failover.through_failover(
                write, total=WRITES, kill_at=kill_at, kill=lambda v=victim: redis_cluster.kill(v)
            )
            _failover.record(
                "redis cluster",
                "store write (slot's master killed)",
                outcome.failover,
                outcome.failures,
            )
            assert outcome.failures > 0, "the kill did not reach the store's master"
            assert redis_cluster.master_of(hash_tag(prefix)) != victim
            revisions = [outcome.acked[i] for i in range(WRITES)]
            assert revisions == sorted(revisions)
            assert len(set(revisions)) == WRITES
            after = [f"{keys}{i}" for i in range(kill_at, WRITES) if i not in outcome.ambiguous]
            records = await eventually(lambda names=after: store.read_many(names))
            assert {k: r.revision for k, r in records.items()} == {
                f"{keys}{i}": outcome.acked[i]
                for i in range(kill_at, WRITES)
                if f"{keys}{i}" in after
            }
            listed = set(await store.list(prefix=keys))
            assert set(after) <= listed
            # Acknowledged before the kill: kept only if the replica had received them.
            early = [f"{keys}{i}" for i in range(kill_at)]
            kept = await eventually(lambda names=early: store.read_many(names))
            _failover.note(
                f"redis cluster: {kill_at - len(kept)} of {kill_at} store writes acknowledged"
                " before the slot's master was killed were missing after the failover"
            )
            redis_cluster.heal()


class _Received:
    def __init__(self) -> None:
        self.bodies: list[object] = []
        self.events: list[type[BaseException]] = []

    def handler(self, message: Message) -> None:
        self.bodies.append(message.decode())

    def on_error(self, exc: BaseException, subscription: object) -> None:
        self.events.append(type(exc))


async def _until_delivered(publisher: Broker, topic: str, got: _Received, tag: str) -> None:
    deadline = time.monotonic() + RECOVER
    n = 0
    while not any(isinstance(b, str) and b.startswith(tag) for b in got.bodies):
        assert time.monotonic() < deadline, f"no {tag!r} message delivered within {RECOVER}s"
        n += 1
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(publisher.publish(topic, f"{tag}{n}"))
        await asyncio.sleep(0.05)


async def test_a_subscription_moves_off_its_dead_node(redis_cluster: RedisCluster) -> None:
    """Core broker: the node a subscription's pub/sub connection is on (the master
    of its channel's slot) is killed; the subscription reports the loss,
    subscribes again on a node of the new slot map by itself, reports the return,
    and receives what is published afterwards (classic PUBLISH reaches every
    node; what was published during the move is lost: pub/sub is at most once)."""
    url = redis_cluster.url()
    topic = _unique("hc.")
    got = _Received()
    subscriber: Broker = microstd.broker.open(url, on_error=got.on_error, **FAST)
    async with subscriber, microstd.broker.open(url, **FAST) as publisher:
        await subscriber.subscribe(topic, got.handler)
        await _until_delivered(publisher, topic, got, "before")
        redis_cluster.kill(redis_cluster.master_of(topic))
        start = time.monotonic()
        await _until_delivered(publisher, topic, got, "after")
        _failover.record(
            "redis cluster", "core subscription (its node killed)", time.monotonic() - start
        )
        assert ConnectionFailed in got.events
        assert ConnectionRestored in got.events[got.events.index(ConnectionFailed) :]


async def test_durable_messages_published_after_the_failover_are_all_delivered(
    redis_cluster: RedisCluster,
) -> None:
    """Durable broker: the master of the broker's slot (its streams) is killed while
    messages are published to a durable subscription; publishes fail fast until
    the replica is promoted, retries complete them, and every message acknowledged
    after the failover is delivered (at least once). Messages acknowledged just
    before the kill may be lost with the master (asynchronous replication)."""
    prefix = f"{_unique('hd')}:"
    url = redis_cluster.url(f"prefix={prefix}")
    topic, durable = _unique("hd."), _unique("d")
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

        async def publish(i: int) -> None:
            await publisher.publish(topic, i)

        victim = redis_cluster.master_of(hash_tag(prefix))
        kill_at = WRITES // 3
        outcome = await _failover.through_failover(
            publish, total=WRITES, kill_at=kill_at, kill=lambda: redis_cluster.kill(victim)
        )
        _failover.record(
            "redis cluster",
            "durable publish (slot's master killed)",
            outcome.failover,
            outcome.failures,
        )
        assert outcome.failures > 0, "the kill did not reach the broker's master"
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
    prefix = f"{_unique('hl')}:"
    url = redis_cluster.url(f"prefix={prefix}&timeout=1&connect_timeout=1")
    name = _unique("lock")
    log = FencedLog()
    grants: list[tuple[float, int, str]] = []
    firsts: list[bool] = []
    failed: list[float] = []
    stop = asyncio.Event()

    async def worker(locks: Any, who: str) -> None:
        while not stop.is_set():
            try:
                lease = await locks.acquire(name, ttl=TTL, wait=2.0)
            except (LockTimeout, ConnectionFailed):
                failed.append(time.monotonic())
                await asyncio.sleep(0.02)
                continue
            grants.append((time.monotonic(), lease.token, who))
            firsts.append(log.write(lease.token, who))
            await hold_in_steps(lease, 2, 0.02)
            log.write(lease.token, who)
            with contextlib.suppress(LockLost, ConnectionFailed):
                await lease.release()

    async with microstd.sync.open(url) as a, microstd.sync.open(url) as b:
        tasks = [asyncio.create_task(worker(a, "a")), asyncio.create_task(worker(b, "b"))]
        try:
            await wait_until(lambda: len(grants) >= 10, 2 * RECOVER)
            victim = redis_cluster.master_of(hash_tag(prefix))
            redis_cluster.kill(victim)
            killed = time.monotonic()
            before = len(grants)
            await wait_until(lambda: len(grants) >= before + 10, 2 * RECOVER)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    assert redis_cluster.master_of(hash_tag(prefix)) != victim
    # The first grant after the first failed acquire since the kill (a grant whose
    # reply was already on its way when the master died is not the failover's).
    since = min((t for t in failed if t >= killed), default=killed)
    first_after = min(t for t, _, _ in grants[before:] if t >= since)
    _failover.record("redis cluster", "lock acquire (slot's master killed)", first_after - killed)
    tokens = [token for _, token, _ in sorted(grants)]
    assert tokens == sorted(tokens), tokens
    assert len(set(tokens)) == len(tokens), tokens
    assert all(firsts), "a new holder's first write was refused: a token went back"


async def test_registrations_after_the_failover_are_found(redis_cluster: RedisCluster) -> None:
    """Registry: the master of the registry's hash slot is killed while a registry
    registers nodes; registration goes on on the new master after retries, and
    every node registered after the failover is found by a lookup."""
    import microstd.registry
    from microstd.errors import NotFound
    from microstd.registry import Node, ServiceRecord

    prefix = f"{_unique('hr')}:"
    url = redis_cluster.url(f"prefix={prefix}")
    total, kill_at = 20, 5
    async with microstd.registry.open(url, **FAST) as registry:

        async def register(i: int) -> None:
            record = ServiceRecord("greeter", "1", [Node(f"n{i}", "127.0.0.1:8000")], [])
            await registry.register(record, ttl=60)

        victim = redis_cluster.master_of(hash_tag(prefix))
        outcome = await _failover.through_failover(
            register, total=total, kill_at=kill_at, kill=lambda: redis_cluster.kill(victim)
        )
        _failover.record(
            "redis cluster",
            "registry register (slot's master killed)",
            outcome.failover,
            outcome.failures,
        )
        assert outcome.failures > 0, "the kill did not reach the registry's master"

        async def nodes() -> set[str]:
            try:
                return {n.id for s in await registry.lookup("greeter") for n in s.nodes}
            except NotFound:
                return set()

        found = await eventually(nodes)
        after = {f"n{i}" for i in range(kill_at, total) if i not in outcome.ambiguous}
        assert after <= found, sorted(after - found)
        _failover.note(
            f"redis cluster: {len({f'n{i}' for i in range(kill_at)} - found)} of {kill_at}"
            " registrations acknowledged before the slot's master was killed were missing"
        )
