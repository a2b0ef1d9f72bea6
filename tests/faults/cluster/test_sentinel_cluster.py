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
import uuid
from typing import Any

import pytest

import microstd.broker
import microstd.store
import microstd.sync
from faults._locks import FencedLog, hold_in_steps
from faults._support import FAST, RECOVER, eventually, never_hangs
from faults.cluster import _failover
from faults.cluster._clusters import SentinelCluster
from microstd.broker import Broker, Message
from microstd.errors import ConnectionFailed, ConnectionRestored, LockLost, LockTimeout

WRITES = 60


def _unique(what: str) -> str:
    return f"{what}{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("scheme", ["redis+sentinel", "redis-sentinel", "sentinel"])
async def test_every_spelling_reaches_the_master(
    sentinel_cluster: SentinelCluster, scheme: str
) -> None:
    """The usual spellings of the Sentinel scheme all name the master."""
    url = sentinel_cluster.url(query=f"prefix={_unique('sp')}", scheme=scheme)
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
    url = sentinel_cluster.url(query=f"prefix={_unique('ha')}:")
    async with microstd.store.open(url, **FAST) as store:
        for _ in range(_failover.rounds(2)):
            prefix = _unique("r")

            async def write(i: int, prefix: str = prefix) -> int:
                return int(await store.write(f"{prefix}{i}", {"n": i}))

            kill_at = WRITES // 3
            outcome = await _failover.through_failover(
                write, total=WRITES, kill_at=kill_at, kill=sentinel_cluster.kill_master
            )
            _failover.record(
                "redis sentinel",
                "store write (master killed)",
                outcome.failover,
                outcome.failures,
            )
            revisions = [outcome.acked[i] for i in range(WRITES)]
            assert revisions == sorted(revisions)
            assert len(set(revisions)) == WRITES
            after = [f"{prefix}{i}" for i in range(kill_at, WRITES) if i not in outcome.ambiguous]
            records = await eventually(lambda keys=after: store.read_many(keys))
            assert {k: r.revision for k, r in records.items()} == {
                f"{prefix}{i}": outcome.acked[i]
                for i in range(kill_at, WRITES)
                if f"{prefix}{i}" in after
            }
            # Acknowledged before the kill: kept only if the replica had received them.
            early = [f"{prefix}{i}" for i in range(kill_at)]
            kept = await eventually(lambda keys=early: store.read_many(keys))
            _failover.note(
                f"redis sentinel: {kill_at - len(kept)} of {kill_at} writes acknowledged"
                " before the master was killed were missing after the failover"
            )
            sentinel_cluster.heal()


class _Received:
    def __init__(self) -> None:
        self.bodies: list[object] = []
        self.events: list[type[BaseException]] = []

    def handler(self, message: Message) -> None:
        self.bodies.append(message.decode())

    def on_error(self, exc: BaseException, subscription: object) -> None:
        self.events.append(type(exc))


async def test_subscriptions_move_to_the_new_master(sentinel_cluster: SentinelCluster) -> None:
    """Broker: the master is killed; the subscription reports the loss, subscribes
    again on the new master by itself, reports the return, and receives what is
    published afterwards (what was published during the failover is lost: pub/sub
    is at most once)."""
    url = sentinel_cluster.url()
    topic = _unique("ha.")
    got = _Received()
    subscriber: Broker = microstd.broker.open(url, on_error=got.on_error, **FAST)
    async with subscriber, microstd.broker.open(url, **FAST) as publisher:
        await subscriber.subscribe(topic, got.handler)
        await _until_delivered(publisher, topic, got, "before")
        sentinel_cluster.kill_master()
        start = time.monotonic()
        await _until_delivered(publisher, topic, got, "after")
        _failover.record(
            "redis sentinel", "core subscription (master killed)", time.monotonic() - start
        )
        assert ConnectionFailed in got.events
        assert ConnectionRestored in got.events[got.events.index(ConnectionFailed) :]


async def _until_delivered(publisher: Broker, topic: str, got: _Received, tag: str) -> None:
    deadline = time.monotonic() + RECOVER
    n = 0
    while not any(isinstance(b, str) and b.startswith(tag) for b in got.bodies):
        assert time.monotonic() < deadline, f"no {tag!r} message delivered within {RECOVER}s"
        n += 1
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(publisher.publish(topic, f"{tag}{n}"))
        await asyncio.sleep(0.05)


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
    name = _unique("lock")
    log = FencedLog()
    grants: list[tuple[float, int, str]] = []
    firsts: list[bool] = []
    stop = asyncio.Event()

    async def worker(locks: Any, who: str) -> None:
        while not stop.is_set():
            try:
                lease = await locks.acquire(name, ttl=TTL, wait=2.0)
            except (LockTimeout, ConnectionFailed):
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
            await _wait_for(lambda: len(grants) >= 10, "grants before the kill")
            sentinel_cluster.kill_master()
            killed = time.monotonic()
            before = len(grants)
            await _wait_for(lambda: len(grants) >= before + 10, "grants after the kill")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    first_after = min(t for t, _, _ in grants[before:])
    _failover.record("redis sentinel", "lock acquire (master killed)", first_after - killed)
    tokens = [token for _, token, _ in sorted(grants)]
    assert tokens == sorted(tokens), tokens
    assert len(set(tokens)) == len(tokens), tokens
    assert all(firsts), "a new holder's first write was refused: a token went back"


async def _wait_for(check: Any, what: str, seconds: float = 2 * RECOVER) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds}s"
        await asyncio.sleep(0.05)
