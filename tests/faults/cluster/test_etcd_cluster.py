"""A three-member etcd cluster losing a member in the middle of a workload, through
``etcd://h1,h2,h3`` URLs.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
etcd replicates through Raft: a write is acknowledged once a majority holds it,
so unlike Redis Sentinel nothing acknowledged is lost when one member dies, and
leases (hence locks and registrations) live on in the cluster. What a member's
death costs a client is the failover: moving to another member, and waiting for
a new Raft leader when the dead member led.

Each client under test gets its own engine client: the URLs list the members in
different orders, with ``randomize=0`` so that each client starts on the member
its URL lists first. That is how a test puts the client it kills under on the
Raft leader or on a follower; later rounds (`-m cluster`) kill whichever member
the client moved to, found through `EtcdClient.member`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import microstd.registry
import microstd.sync
from faults._locks import check_spans
from faults._support import RECOVER, eventually
from faults.cluster import _failover
from faults.cluster._clusters import EtcdCluster
from faults.cluster._etcd import TTL, Member, kill_member, leader_of, member_url
from faults.cluster._workload import (
    LockTurns,
    collect_nodes,
    follow_reloads,
    greeter,
    node_ids,
    unique,
    wait_for,
    watch_reporting,
    write_until_applied,
)
from microstd._engines import etcd as engine
from microstd.errors import ConnectionFailed, LockTimeout


def test_a_url_names_every_member(etcd_cluster: EtcdCluster) -> None:
    """A host list names the cluster; options and credentials apply to every member."""
    endpoint, rest = engine.EtcdEndpoint.from_url(etcd_cluster.url("timeout=2&prefix=/a/"))
    assert endpoint.members == tuple(f"http://127.0.0.1:{p}" for p in etcd_cluster.ports)
    assert endpoint.timeouts.request == 2.0
    assert rest == {"prefix": "/a/"}


async def test_a_watch_resumes_on_another_member_without_missing_an_event(
    etcd_cluster: EtcdCluster,
) -> None:
    """The engine's watch: a client watches a prefix through a follower while
    three writers on the leader write under it as fast as they can; the
    watch's member is killed. The watch goes on by itself on another member,
    from the revision after the last event it delivered: every write
    acknowledged is delivered, each event once and in revision order (the time
    from the kill to the first event after it is recorded)."""
    follower = leader_of(etcd_cluster) + 1
    prefix = f"/{unique('watch')}/"
    request = {"key": engine.b64(prefix), "range_end": engine.prefix_end(prefix)}
    seen: list[tuple[float, int]] = []
    acked: set[int] = set()
    stop = asyncio.Event()
    async with (
        Member.of(etcd_cluster, member_url(etcd_cluster, follower)) as watcher,
        Member.of(etcd_cluster, member_url(etcd_cluster, follower + 2)) as writer,
    ):

        async def follow() -> None:
            async for result in watcher.client.watch(request, "test watch"):
                for event in result.get("events") or []:
                    seen.append((time.monotonic(), int(event["kv"]["mod_revision"])))

        async def write(who: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"key": engine.b64(f"{prefix}{who}/{n}"), "value": engine.b64("x")}
                with contextlib.suppress(ConnectionFailed):
                    answer = await writer.client.call("kv/put", body, "test put", idempotent=True)
                    acked.add(engine.int_field(answer, "header", "revision"))

        task = asyncio.create_task(follow())
        writers = [asyncio.create_task(write(w)) for w in range(3)]
        try:
            for _ in range(_failover.rounds(2)):
                await wait_for(lambda: len(seen) >= 50, "events before the kill")
                killed = time.monotonic()
                watcher.kill()
                await wait_for(
                    lambda killed=killed: sum(t > killed for t, _ in seen) >= 50, "events after"
                )
                resumed = min(t for t, _ in seen if t > killed)
                _failover.record(
                    "etcd", "watch event (its member killed: a follower)", resumed - killed
                )
                await asyncio.to_thread(etcd_cluster.heal)
            stop.set()
            await asyncio.gather(*writers)
            await wait_for(lambda: acked <= {rev for _, rev in seen}, "every write delivered")
            assert not task.done(), task
            revisions = [rev for _, rev in seen]
            assert revisions == sorted(set(revisions)), "an event delivered twice or out of order"
        finally:
            stop.set()
            for t in (task, *writers):
                t.cancel()
            await asyncio.gather(task, *writers, return_exceptions=True)


async def test_locks_never_have_two_holders_when_the_connected_member_dies(
    etcd_cluster: EtcdCluster,
) -> None:
    """Locks: three clients (one on each member) take turns holding one lock,
    writing their fencing token to a shared log as each holding starts and ends,
    while the member one of them is on, the Raft leader, is killed. No two holdings
    overlap (each ends, at the latest, when its holder's safe window closes),
    tokens rise in grant order so the log accepts every new holder, and
    acquisitions go on: the probe that acquires and releases through the killed
    client succeeds again after a retry (the failover cost recorded)."""
    turns = LockTurns(unique("lock"), ttl=TTL, wait=3.0, steps=3, step=0.03)
    grants = turns.grants

    leader = leader_of(etcd_cluster)
    urls = [member_url(etcd_cluster, leader + r) for r in range(3)]  # a starts on the leader
    async with (
        microstd.sync.open(urls[0]) as a,
        microstd.sync.open(urls[1]) as b,
        microstd.sync.open(urls[2]) as c,
        Member.of(etcd_cluster, urls[0]) as member_of_a,
    ):
        tasks = [
            asyncio.create_task(turns.take_turns(x, who))
            for x, who in ((a, "a"), (b, "b"), (c, "c"))
        ]
        try:
            for _ in range(_failover.rounds(3)):
                await wait_for(lambda: len(grants) >= 5, "grants before the kill")
                probe = unique("probe")

                async def acquire_release(i: int, probe: str = probe) -> int:
                    lease = await a.acquire(f"{probe}-{i}", ttl=TTL, wait=10.0)
                    await lease.release()
                    return int(lease.token)

                killed: list[str] = []
                outcome = await _failover.through_failover(
                    acquire_release,
                    total=20,
                    kill_at=5,
                    kill=lambda killed=killed: killed.append(
                        kill_member(etcd_cluster, member_of_a)
                    ),
                    pause=0.05,
                )
                _failover.record(
                    "etcd",
                    f"lock acquire+release (client's member killed: {killed[0]})",
                    outcome.failover,
                    outcome.failures,
                )
                before = len(grants)
                await wait_for(lambda before=before: len(grants) >= before + 5, "grants after")
                await asyncio.to_thread(etcd_cluster.heal)
        finally:
            turns.stop.set()
            await asyncio.gather(*tasks)
    check_spans(turns.spans)
    turns.assert_tokens_rose()


async def test_at_most_one_leader_while_the_raft_leader_dies(etcd_cluster: EtcdCluster) -> None:
    """Leader election: three candidates (one on each member) take turns leading
    (elect, lead a moment, resign) while the cluster's Raft leader, the member
    one of them is on, is killed. Leaderships never overlap (one ends when its
    holder resigns or its `lost` fires), tokens rise, and new leaders keep being
    elected after the kill (the time to the first is recorded)."""
    name = unique("election")
    spans: list[tuple[float, float, int, str]] = []
    stop = asyncio.Event()

    async def candidate(locks: Any, who: str) -> None:
        while not stop.is_set():
            try:
                leadership = await locks.elect(name, candidate=who, ttl=TTL, wait=3.0)
            except (LockTimeout, ConnectionFailed):
                await asyncio.sleep(0.02)
                continue
            start = time.monotonic()
            lost = asyncio.ensure_future(leadership.lost.wait())
            await asyncio.wait({lost}, timeout=0.2)
            end = time.monotonic()
            lost.cancel()
            spans.append((start, end, leadership.token, who))
            with contextlib.suppress(ConnectionFailed):
                await leadership.resign()

    leader = leader_of(etcd_cluster)
    urls = [member_url(etcd_cluster, leader + r) for r in range(3)]  # one per member
    async with (
        microstd.sync.open(urls[0]) as a,
        microstd.sync.open(urls[1]) as b,
        microstd.sync.open(urls[2]) as c,
    ):
        tasks = [
            asyncio.create_task(candidate(x, who)) for x, who in ((a, "a"), (b, "b"), (c, "c"))
        ]
        try:
            for _ in range(_failover.rounds(3)):
                await wait_for(lambda: len(spans) >= 5, "leaderships before the kill")
                raft_leader = await asyncio.to_thread(leader_of, etcd_cluster)
                before = len(spans)
                killed = time.monotonic()
                etcd_cluster.kill(raft_leader)
                await wait_for(lambda before=before: len(spans) >= before + 5, "leaders after")
                # The cost: the longest time without a leader from the last leadership
                # begun before the kill on (a leadership's end is its resignation).
                around = sorted(spans)
                around = around[max(0, sum(start < killed for start, *_ in around) - 1) :]
                gaps = [b[0] - a[1] for a, b in itertools.pairwise(around)]
                _failover.record(
                    "etcd", "election (the Raft leader killed): longest leaderless", max(gaps)
                )
                await asyncio.to_thread(etcd_cluster.heal)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    check_spans(spans)


def test_the_blocking_surface_fails_over_too(etcd_cluster: EtcdCluster) -> None:
    """The blocking surface (the async backend on a private loop thread): the
    member its client starts on (a follower) is killed between two series of
    acquisitions; the next ones go to another member (failed calls, if any,
    succeed when retried) and a leadership taken before the kill outlives it."""
    follower = (leader_of(etcd_cluster) + 1) % len(etcd_cluster.nodes)
    name = unique("blocking")
    with microstd.sync.open_sync(member_url(etcd_cluster, follower)) as locks:
        for i in range(3):
            locks.acquire(f"{name}-{i}", ttl=TTL, wait=5.0).release()
        leadership = locks.elect(f"{name}-leader", candidate="a", ttl=2 * TTL)
        etcd_cluster.kill(follower)
        killed, failures = time.monotonic(), 0
        first: float | None = None
        for i in range(3, 8):
            while True:
                try:
                    locks.acquire(f"{name}-{i}", ttl=TTL, wait=5.0).release()
                    break
                except ConnectionFailed:
                    failures += 1
                    assert time.monotonic() < killed + RECOVER, "acquisitions never went on"
            first = time.monotonic() if first is None else first
        assert first is not None
        _failover.record(
            "etcd",
            "blocking lock acquire+release (client's member killed: a follower)",
            first - killed,
            failures,
        )
        assert locks.leader(f"{name}-leader") == "a"
        leadership.resign()
    etcd_cluster.heal()


async def test_registrations_stay_discoverable_and_the_watch_goes_on(
    etcd_cluster: EtcdCluster,
) -> None:
    """Registry: a registry registers nodes (with a TTL) and watches the service
    while the member it is on, a follower, is killed. Registration goes on after a retry (the
    failover cost recorded); every node registered, before the kill or after it,
    is found by lookups through that registry and through another one; the watch
    goes on, without an error, and reports every node registered after the kill."""
    query = f"prefix=/{unique('reg')}/"
    follower = leader_of(etcd_cluster) + 1
    urls = [member_url(etcd_cluster, follower + r, query) for r in range(2)]
    total, kill_at = 20, 5
    async with (
        microstd.registry.open(urls[0]) as registry,
        microstd.registry.open(urls[1]) as other,
        Member.of(etcd_cluster, urls[0]) as member,
    ):
        for round_ in range(_failover.rounds(3)):
            events = registry.watch("greeter")
            seen: set[str] = set()
            watching = asyncio.create_task(collect_nodes(events, seen))
            await watch_reporting(registry, seen, f"w{round_}", ttl=30)

            async def register(i: int, r: int = round_) -> None:
                await registry.register(greeter(f"n{r}-{i}"), ttl=30)

            killed: list[str] = []
            outcome = await _failover.through_failover(
                register,
                total=total,
                kill_at=kill_at,
                kill=lambda killed=killed: killed.append(kill_member(etcd_cluster, member)),
                pause=0.02,
            )
            _failover.record(
                "etcd",
                f"registry register (client's member killed: {killed[0]})",
                outcome.failover,
                outcome.failures,
            )
            want = {f"n{round_}-{i}" for i in range(total)}
            for r in (registry, other):
                found = await eventually(lambda r=r: node_ids(r))
                assert want <= found, sorted(want - found)
            after = {f"n{round_}-{i}" for i in range(kill_at, total)}
            await wait_for(lambda a=after, s=seen: a <= s, "the watch reporting every node")
            assert not watching.done(), watching
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await events.aclose()  # type: ignore[attr-defined]
            await asyncio.to_thread(etcd_cluster.heal)


async def test_config_reloads_after_its_member_dies(etcd_cluster: EtcdCluster) -> None:
    """Config source: hot reload from an etcd prefix while the member the source's
    watch is on, the Raft leader, is killed; the watch resumes on another member by itself (no
    error is reported) and a change made after the kill is applied (the time to
    it is recorded)."""
    from microstd import config

    prefix = f"/{unique('cfg')}/"
    leader = leader_of(etcd_cluster)
    urls = [member_url(etcd_cluster, leader + r) for r in range(2)]  # the source on the leader
    writer = await engine.acquire(engine.EtcdEndpoint.from_url(urls[1])[0])

    async def put(value: str) -> None:
        body = {"key": engine.b64(f"{prefix}db/host"), "value": engine.b64(value)}
        await writer.call("kv/put", body, "test put", idempotent=True)

    try:
        await put("v0")
        cfg = await config.load_async(sources=[config.etcd(urls[0], prefix)])
        assert cfg.value == {"db": {"host": "v0"}}
        errors: list[BaseException] = []
        cfg.on_error(errors.append)

        task = asyncio.create_task(follow_reloads(cfg))
        try:
            async with Member.of(etcd_cluster, urls[0]) as member:
                for round_ in range(_failover.rounds(3)):
                    want = f"v{round_ + 1}"
                    await write_until_applied(cfg, f"w{round_}", put)
                    role = kill_member(etcd_cluster, member)
                    start = time.monotonic()
                    await write_until_applied(cfg, want, put)
                    _failover.record(
                        "etcd",
                        f"config reload (watch's member killed: {role})",
                        time.monotonic() - start,
                    )
                    await asyncio.to_thread(etcd_cluster.heal)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The watch moved to another member by itself: no reload failed, none restarted.
        assert errors == []
    finally:
        await engine.release(writer)
