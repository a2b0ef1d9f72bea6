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
from microstd.errors import (
    ConfigError,
    ConnectionFailed,
    ConnectionRestored,
    LockLost,
    LockTimeout,
)

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


def _greeter(node: str) -> Any:
    from microstd.registry import Node, ServiceRecord

    return ServiceRecord("greeter", "1", [Node(node, "127.0.0.1:8000")], ["Greeter.Hello"])


async def _greeter_nodes(registry: Any) -> set[str]:
    from microstd.errors import NotFound

    try:
        return {n.id for s in await registry.lookup("greeter") for n in s.nodes}
    except NotFound:
        return set()


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

    url = sentinel_cluster.url(query=f"prefix={_unique('reg')}:&timeout=1&connect_timeout=1")
    total, kill_at = 20, 5
    svc = microstd.Service(_unique("hb"), registry=url, ttl=3.0, interval=1.0)
    async with svc, microstd.registry.open(url) as registry:
        node = svc.server.node_id

        async def register(i: int) -> None:
            await registry.register(_greeter(f"n{i}"), ttl=60)

        outcome = await _failover.through_failover(
            register, total=total, kill_at=kill_at, kill=sentinel_cluster.kill_master, pause=0.02
        )
        _failover.record(
            "redis sentinel",
            "registry register (master killed)",
            outcome.failover,
            outcome.failures,
        )
        found = await eventually(lambda: _greeter_nodes(registry))
        after = {f"n{i}" for i in range(kill_at, total) if i not in outcome.ambiguous}
        assert after <= found, sorted(after - found)
        before = {f"n{i}" for i in range(kill_at)}
        _failover.note(
            f"redis sentinel: {len(before - found)} of {kill_at} registrations acknowledged"
            " before the master was killed were missing after the failover"
        )

        async def service_nodes() -> set[str]:
            try:
                return {n.id for s in await registry.lookup(svc.name) for n in s.nodes}
            except microstd.errors.NotFound:
                return set()

        # The service's heartbeat goes on against the new master...
        await _wait_for_async(lambda: service_nodes(), lambda got: node in got, "the service")
        # ...and writes a lost registration back: remove it as the lost write would be.
        await eventually(lambda: registry.deregister(svc.record()))
        removed = time.monotonic()
        await _wait_for_async(
            lambda: service_nodes(), lambda got: node in got, "the heartbeat re-registering"
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
    key = _unique("cfg")
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

        async def follow() -> None:
            async for _ in cfg.watch(debounce=0.02):
                pass

        task = asyncio.create_task(follow())
        try:
            await _applied(cfg, "v1", put)
            sentinel_cluster.kill_master()
            start = time.monotonic()
            await _applied(cfg, "v2", put)
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


async def _applied(cfg: Any, want: str, put: Any) -> None:
    """Write `want` (again, every so often: a write may be lost) until the config
    shows it."""
    deadline = time.monotonic() + RECOVER
    while cfg.value["db"]["host"] != want:
        assert time.monotonic() < deadline, f"config never showed {want}"
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(put(want))
        await asyncio.sleep(0.1)
