"""A member of a three-member etcd cluster that stops answering without going
away: frozen (SIGSTOP: its connections stay open, nothing answers), or cut off
from the client by a network that silently holds every byte (a partition, made
with the loopback proxy of `faults._proxy` in front of one member).

Nothing tells the client that member is gone: no refused connection, no reset,
no "no leader". What it has is its per-attempt deadline (`attempt_timeout`, 1 s
here, a third of `timeout=3`): a request safe to repeat is abandoned on the
silent member after it and sent to the next, within the same call. A watch on
the silent member resumes elsewhere from the revision after its last event as
soon as a request of its client gives up on that member, or else when it fails
its own liveness check (`ping_interval` plus an attempt): the freeze test
relies on either (`ping_interval=1`), the partition test on the first alone
(`ping_interval=120`, longer than the test waits).

Each test runs one workload through the client whose member goes silent:
lock acquire + release, registry register + lookup, while three lock sets (one
on the silent member) take turns on one lock writing their fencing tokens to a
shared log, a watch on the silent member follows a prefix that a writer on
another member fills as fast as it can, a registry watch follows the service,
and a config source hot reloads from the silent member. The time from the
silence to the first successful operation, and the slowest operation before
and after it, are printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import microstd.registry
import microstd.sync
from faults._locks import check_spans
from faults._proxy import FaultProxy
from faults.cluster import _failover
from faults.cluster._clusters import EtcdCluster
from faults.cluster._etcd import TTL, Member, leader_of, member_url
from faults.cluster._workload import (
    LockTurns,
    collect_nodes,
    follow_reloads,
    greeter,
    node_ids,
    unique,
    wait_for,
    watch_reporting,
)
from microstd import config
from microstd._engines import etcd as engine
from microstd.errors import ConnectionFailed

#: The per-attempt deadline of the clients under test (seconds).
ATTEMPT = 1.0
QUERY = f"attempt_timeout={ATTEMPT:g}"


async def _through_silence(
    cluster: EtcdCluster,
    victim: int,
    silence: Callable[[], None],
    what: str,
    *,
    via: dict[int, int] | None = None,
    failures_allowed: bool = False,
    options: str = "",
) -> None:
    """The workload (see the module docstring) through the client on member
    `victim` (reached through port `via[victim]` when given), with `silence()`
    called in its middle; `options` are more URL options for that client."""
    x_query = f"{QUERY}&{options}" if options else QUERY
    reg_query = f"{x_query}&prefix=/{unique('reg')}/"
    x_url = member_url(cluster, victim, x_query, via)
    others = [member_url(cluster, victim + k, QUERY) for k in (1, 2)]
    ports = {port: i for i, port in (via or {}).items()}
    name, probe, watched = unique("lock"), unique("probe"), f"/{unique('watched')}/"
    settings = f"/{unique('cfg')}/"
    config_errors: list[BaseException] = []
    turns = LockTurns(name, ttl=TTL, wait=3.0, steps=3, step=0.03)
    grants = turns.grants
    revisions: list[int] = []
    acked: set[int] = set()
    nodes: set[str] = set()
    durations: list[tuple[float, float]] = []
    stop = turns.stop

    async def follow(client: engine.EtcdClient) -> None:
        request = {"key": engine.b64(watched), "range_end": engine.prefix_end(watched)}
        async for result in client.watch(request, "test watch"):
            revisions.extend(int(e["kv"]["mod_revision"]) for e in result.get("events") or [])

    async def set_host(client: engine.EtcdClient, value: str) -> None:
        body = {"key": engine.b64(f"{settings}db/host"), "value": engine.b64(value)}
        await client.call("kv/put", body, "test put", idempotent=True)

    async def write(client: engine.EtcdClient) -> None:
        for n in range(1_000_000):
            if stop.is_set():
                return
            body = {"key": engine.b64(f"{watched}{n}"), "value": engine.b64("x")}
            with contextlib.suppress(ConnectionFailed):
                answer = await client.call("kv/put", body, "test put", idempotent=True)
                acked.add(engine.int_field(answer, "header", "revision"))

    async with (
        microstd.sync.open(x_url) as a,
        microstd.sync.open(others[0]) as b,
        microstd.sync.open(others[1]) as c,
        microstd.registry.open(member_url(cluster, victim, reg_query, via)) as registry,
        Member.of(cluster, x_url, ports) as x,
        Member.of(cluster, others[1]) as writer,
    ):
        await set_host(writer.client, "before")
        cfg = await config.load_async(sources=[config.etcd(x_url, settings)])
        cfg.on_error(config_errors.append)
        events = registry.watch("greeter")
        tasks = [
            asyncio.create_task(collect_nodes(events, nodes)),
            asyncio.create_task(follow(x.client)),
            asyncio.create_task(follow_reloads(cfg)),
            asyncio.create_task(write(writer.client)),
            *(
                asyncio.create_task(turns.take_turns(s, who))
                for s, who in ((a, "a"), (b, "b"), (c, "c"))
            ),
        ]
        try:
            await watch_reporting(registry, nodes, "before", ttl=30)
            await wait_for(lambda: len(grants) >= 3 and len(revisions) >= 20, "a running workload")

            async def op(i: int) -> None:
                started = time.monotonic()
                lease = await a.acquire(f"{probe}-{i}", ttl=TTL, wait=10.0)
                await lease.release()
                await registry.register(greeter(f"n{i}"), ttl=30)
                assert f"n{i}" in await node_ids(registry)
                durations.append((started, time.monotonic() - started))

            silenced: list[float] = []

            def go_silent() -> None:
                assert x.index() == victim, "the client left its member before the test"
                silence()
                silenced.append(time.monotonic())

            total, at = 16, 6
            outcome = await _failover.through_failover(
                op, total=total, kill_at=at, kill=go_silent, pause=0.05
            )
            assert x.index() != victim, "the client stayed with the silent member"
            # The lock set on the silent member gets the shared lock again, and the
            # watch goes on: both waited on the silent member when it went quiet.
            await wait_for(lambda: any(t > silenced[0] and w == "a" for t, _, w in grants), "a")
            seen_before = len(revisions)
            await wait_for(lambda: len(revisions) >= seen_before + 20, "watch events after")
        finally:
            stop.set()
            await asyncio.gather(*tasks[3:], return_exceptions=True)
        try:
            # Every write acknowledged from the watch's start on (its first event;
            # the writer starts with it, so its first puts may come before).
            since = {rev for rev in acked if rev >= revisions[0]}
            await wait_for(lambda: since <= set(revisions), "every write seen by the watch")
            await wait_for(lambda: {f"n{i}" for i in range(total)} <= nodes, "every node seen")
            await set_host(writer.client, "after")
            await wait_for(lambda: cfg.value["db"]["host"] == "after", "the config reloaded")
            assert not any(t.done() for t in tasks[:3]), "a watch ended"
        finally:
            for t in tasks[:3]:
                t.cancel()
            await asyncio.gather(*tasks[:3], return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]

    assert revisions == sorted(set(revisions)), "a watch event delivered twice or out of order"
    # The config source's watch moved to another member by itself: nothing reported.
    assert config_errors == []
    check_spans(turns.spans)
    turns.assert_tokens_rose()
    if not failures_allowed:
        assert outcome.failures == 0, "an operation failed: the silence was not just a retry"
    _failover.record("etcd", f"first op after {what}", outcome.failover, outcome.failures)
    before = max(d for t, d in durations if t < silenced[0])
    after = max(d for t, d in durations if t >= silenced[0])
    _failover.note(
        f"etcd             slowest op (lock acquire+release, register, lookup) {what}: "
        f"{before:.2f} s before, {after:.2f} s after (attempt_timeout {ATTEMPT:g} s)"
    )


async def test_a_frozen_member_costs_an_operation_one_attempt(etcd_cluster: EtcdCluster) -> None:
    """The member the client is on, a follower, freezes (SIGSTOP) in the middle of
    the workload. No operation fails: each request safe to repeat (every one
    the locks and the registry make) is abandoned on it after `attempt_timeout`
    and answered by the next member. No two lock holders at once (spans and the
    fenced log); tokens rise; the lock set on the frozen member takes the lock
    again; the engine watch on it resumes elsewhere and delivers every
    acknowledged write once, in order; the registry watch reports every node
    registered; the config source reloads a later change, reporting no error.
    In the long form (`-m cluster`) the Raft leader freezes too
    (then an operation may also wait out the election, and may fail: retried)."""
    rounds = [(leader_of(etcd_cluster) + 1) % len(etcd_cluster.nodes)]
    if _failover.LONG:
        rounds.append(-1)
    for victim in rounds:
        leads = victim < 0
        victim = leader_of(etcd_cluster) if leads else victim
        role = "the leader" if leads else "a follower"
        await _through_silence(
            etcd_cluster,
            victim,
            lambda v=victim: etcd_cluster.pause(v),
            f"a freeze (its member: {role})",
            failures_allowed=leads,
        )
        await asyncio.to_thread(etcd_cluster.heal)


async def test_a_partitioned_member_costs_an_operation_one_attempt(
    etcd_cluster: EtcdCluster,
) -> None:
    """The same workload, the client reaching its member (a follower) through a
    proxy that then stalls: connections stay open and new ones are accepted,
    but no byte passes either way, as in a partition that drops packets (the
    member itself stays in the cluster). Same outcome as a freeze: no operation
    fails, no two lock holders, every write, node and change seen by the watches,
    which move off the silent member when a request gives up on it (their own
    liveness checks are set 120 s apart here, longer than the test waits)."""
    victim = (leader_of(etcd_cluster) + 1) % len(etcd_cluster.nodes)
    with FaultProxy(etcd_cluster.nodes[victim].port) as proxy:
        await _through_silence(
            etcd_cluster,
            victim,
            proxy.stall,
            "a partition (its member: a follower)",
            via={victim: proxy.port},
            options="ping_interval=120",
        )
