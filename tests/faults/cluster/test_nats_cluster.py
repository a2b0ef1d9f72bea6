"""A three-server NATS cluster (routes, JetStream, R3 buckets) losing the server a
client is connected to, in the middle of a workload.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import microstd.broker
import microstd.store
from faults._support import (
    FAST_NATS,
    RECOVER,
    Watcher,
    clean_up,
    eventually,
    never_hangs,
    stop_tasks,
)
from faults.cluster import _failover
from faults.cluster._clusters import NatsCluster
from faults.cluster._workload import (
    WRITES,
    collect_nodes,
    follow_reloads,
    greeter,
    node_ids,
    numbered_writes,
    publish_until_delivered,
    unique,
    watch_reporting,
)
from microstd._engines import nats as engine
from microstd.broker import Broker, Message
from microstd.errors import Conflict, ConnectionFailed, NotFound
from microstd.store import Store


def _store(url: str) -> Store:
    return microstd.store.open(url, **FAST_NATS)


def _connected(obj: Any) -> int:
    """The client port of the server `obj` (a store or broker) is connected to now."""
    server = obj._conn.server
    assert server is not None, "not connected"
    return int(server.rpartition(":")[2])


class _Holder:
    """Gives `_connected` a `_conn` to read."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn


def _kill_connected(cluster: NatsCluster, obj: Any) -> Any:
    def kill() -> None:
        cluster.kill(cluster.index_of(_connected(obj)))

    return kill


async def test_store_acknowledged_writes_survive_the_loss_of_the_connected_server(
    nats_cluster: NatsCluster,
) -> None:
    """KV store, R3 bucket, URL listing the three servers: the server the client is
    on is killed mid-workload; the client fails over to another server, every
    write is acknowledged after at most a few retries, and every acknowledged
    write reads back with its revision (through another server too), revisions
    rising in acknowledgement order."""
    bucket = unique("ha")
    url = nats_cluster.url(f"bucket={bucket}&replicas=3")
    async with _store(url) as store:
        for round_ in range(_failover.rounds(3)):
            prefix = f"r{round_}-"
            outcome = await _failover.through_failover(
                numbered_writes(store, prefix),
                total=WRITES,
                kill_at=WRITES // 3,
                kill=_kill_connected(nats_cluster, store),
            )
            _failover.record(
                "nats",
                "store write (R3, connected server killed)",
                outcome.failover,
                outcome.failures,
            )
            revisions = [outcome.acked[i] for i in range(WRITES)]
            assert revisions == sorted(revisions)
            assert len(set(revisions)) == WRITES
            keys = [f"{prefix}{i}" for i in range(WRITES)]
            records = await eventually(lambda keys=keys: store.read_many(keys))
            assert {k: (r.value, r.revision) for k, r in records.items()} == {
                f"{prefix}{i}": ({"n": i}, outcome.acked[i]) for i in range(WRITES)
            }
            # Every other server serves the same records (the bucket has three copies).
            survivor = next(i for i, n in enumerate(nats_cluster.nodes) if n.proc is not None)
            alone = nats_cluster.url(f"bucket={bucket}&replicas=3", members=[survivor])
            async with _store(alone) as other:
                again = await eventually(lambda other=other, keys=keys: other.read_many(keys))
                assert {k: r.revision for k, r in again.items()} == {
                    k: r.revision for k, r in records.items()
                }
            nats_cluster.heal()


async def test_store_conditional_writes_lose_no_acknowledged_update(
    nats_cluster: NatsCluster,
) -> None:
    """Two clients on different servers increment one counter with conditional
    writes (read, then write with if_revision; Conflict: read again) while the
    server of one of them is killed: the final count is at least the number of
    acknowledged increments (none lost) and at most that plus the attempts that
    failed with ConnectionFailed (each may or may not have been applied)."""
    bucket = unique("hacas")
    key = "counter"
    urls = [nats_cluster.url(f"bucket={bucket}&replicas=3", members=[i]) for i in range(3)]
    async with _store(urls[0]) as a, _store(urls[1]) as b:
        await eventually(lambda: a.write(key, 0))
        failed = 0

        def increment(store: Store) -> Any:
            async def op(i: int) -> int:
                nonlocal failed
                while True:
                    try:
                        record = await store.read(key)
                        return int(
                            await store.write(key, record.value + 1, if_revision=record.revision)
                        )
                    except Conflict:
                        continue
                    except ConnectionFailed:
                        failed += 1
                        raise

            return op

        total = WRITES // 2
        kill_a = _kill_connected(nats_cluster, a)
        results = await asyncio.gather(
            _failover.through_failover(increment(a), total=total, kill_at=total // 3, kill=kill_a),
            _failover.through_failover(increment(b), total=total, kill_at=total, kill=lambda: None),
        )
        _failover.record(
            "nats",
            "store conditional write (R3, connected server killed)",
            results[0].failover,
            results[0].failures,
        )
        final = (await eventually(lambda: b.read(key))).value
        assert 2 * total <= final <= 2 * total + failed


async def test_a_url_naming_one_server_fails_over_to_the_servers_it_discovered(
    nats_cluster: NatsCluster,
) -> None:
    """A URL naming only one server of the cluster: the client learns the others
    from the server (discovered routes) and, when its server is killed, goes on
    on one of them."""
    url = nats_cluster.url(f"bucket={unique('hadisc')}&replicas=3", members=[1])
    async with _store(url) as store:
        await store.write("k", 1)
        assert _connected(store) == nats_cluster.ports[1]
        nats_cluster.kill(1)
        start = time.monotonic()
        await eventually(lambda: store.write("k", 2))
        _failover.record(
            "nats", "store write (only server in URL killed)", time.monotonic() - start
        )
        assert _connected(store) != nats_cluster.ports[1]
        assert (await store.read("k")).value == 2


async def test_a_store_watch_goes_on_across_a_failover(nats_cluster: NatsCluster) -> None:
    """A store watch whose server is killed resumes on another server and delivers
    the writes made after the kill."""
    url = nats_cluster.url(f"bucket={unique('hawatch')}&replicas=3")
    async with _store(url) as store, _store(url) as writer:
        events = store.watch()
        # Through the watching store: a write waits for its watches to be ready.
        await store.write("before", 1)
        first = await never_hangs(events.__anext__())
        assert first.key == "before"
        nats_cluster.kill(nats_cluster.index_of(_connected(store)))
        await eventually(lambda: writer.write("after", 2))
        while True:
            event = await never_hangs(events.__anext__(), RECOVER)
            if event.key == "after":
                assert event.kind == "put"
                break
        await events.aclose()  # type: ignore[attr-defined]


async def test_core_subscriptions_follow_their_connection_to_another_server(
    nats_cluster: NatsCluster,
) -> None:
    """Core broker: the server a subscriber is on is killed; the subscriber's
    connection fails over, its subscriptions are made again on the new server,
    the loss and the return are reported to on_error, and messages published
    through another server reach it again (those published during the failover
    may be lost: core NATS is at most once)."""
    topic = unique("ha.topic.")
    got = Watcher()
    sub_url = nats_cluster.url(members=[0, 1, 2])
    pub_url = nats_cluster.url(members=[2])
    sub_broker: Broker = microstd.broker.open(sub_url, on_error=got.on_error, **FAST_NATS)
    async with sub_broker, microstd.broker.open(pub_url, **FAST_NATS) as publisher:
        if _connected(sub_broker) == nats_cluster.ports[2]:
            # Keep the publisher out of the kill: move the subscriber elsewhere.
            await sub_broker.close()
            sub_broker = microstd.broker.open(
                nats_cluster.url(members=[0, 1]), on_error=got.on_error, **FAST_NATS
            )
            await sub_broker.connect()
        await sub_broker.subscribe(topic, got.handler)
        await publish_until_delivered(publisher, topic, got, "before")
        nats_cluster.kill(nats_cluster.index_of(_connected(sub_broker)))
        start = time.monotonic()
        await publish_until_delivered(publisher, topic, got, "after")
        _failover.record(
            "nats", "core subscription (subscriber's server killed)", time.monotonic() - start
        )
        assert got.reported_loss_and_return(), got.events
        await sub_broker.close()


async def test_a_missing_key_is_not_found_on_the_cluster(nats_cluster: NatsCluster) -> None:
    """The cluster URL is an ordinary store URL: the store's semantics are unchanged."""
    async with _store(nats_cluster.url(f"bucket={unique('hasem')}&replicas=3")) as store:
        try:
            await store.read("missing")
        except NotFound:
            pass
        else:
            raise AssertionError("read of a missing key returned")


async def test_config_follows_its_bucket_across_the_loss_of_its_server(
    nats_cluster: NatsCluster,
) -> None:
    """Config from an R3 bucket through the cluster's server list: the server the
    config's watch is on is killed; the watch moves to another server and every
    later change is applied."""
    import nats as nats_client

    from microstd import config

    bucket = unique("hacfg")
    url = nats_cluster.url()
    writer = await nats_client.connect(
        url.split(","),
        name="writer",
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        connect_timeout=1,
    )
    try:
        kv = await writer.jetstream().create_key_value(bucket=bucket, replicas=3)
        await kv.put("db.host", b"v0")
        cfg = await config.load_async(sources=[config.nats(url, bucket, timeout=1.0)])
        assert cfg.value == {"db": {"host": "v0"}}

        task = asyncio.create_task(follow_reloads(cfg))
        try:
            for round_ in range(_failover.rounds(3)):
                watching = await _server_of_other_client(nats_cluster, "writer")
                nats_cluster.kill(watching)
                start = time.monotonic()
                want = f"v{round_ + 1}"
                while cfg.value["db"]["host"] != want:
                    assert time.monotonic() < start + RECOVER, f"config never showed {want}"
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(kv.put("db.host", want.encode()), 2.0)
                    await asyncio.sleep(0.2)
                _failover.record(
                    "nats", "config reload (watch's server killed)", time.monotonic() - start
                )
                nats_cluster.heal()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await writer.close()


async def _server_of_other_client(cluster: NatsCluster, besides: str) -> int:
    """The member holding the one client connection not named `besides` (polled)."""
    deadline = time.monotonic() + RECOVER
    while True:
        found = [
            i
            for i in range(len(cluster.nodes))
            for c in cluster.clients(i)
            if c.get("lang") == "python3" and c.get("name") != besides
        ]
        if len(found) == 1:
            return found[0]
        assert time.monotonic() < deadline, f"expected one other client, found {found}"
        await asyncio.sleep(0.1)


async def test_rpc_over_nats_goes_on_when_the_services_server_dies(
    nats_cluster: NatsCluster,
) -> None:
    """RPC transport on the cluster: the service is on one server, its client on
    another; the service's server is killed; calls fail (ConnectionFailed or a
    timeout ServiceError) until the service's connection is back on another
    server, then succeed again."""
    import microstd
    from microstd.errors import ServiceError

    name = unique("harpc")
    service_url = nats_cluster.url(members=[0, 1])
    client_url = nats_cluster.url(members=[2])
    svc = microstd.Service(name, transport=service_url)

    @svc.handler("Echo.Say")
    async def say(req: dict[str, Any]) -> dict[str, Any]:
        return req

    async with svc, microstd.Client(transport=client_url) as client:
        assert await client.call(name, "Echo.Say", {"n": 0}, timeout=2.0) == {"n": 0}
        # The service's connection is the shared one of its URL on this loop.
        endpoint, _ = engine.NatsEndpoint.from_url(service_url)
        conn = await engine.acquire(endpoint)
        try:
            served_by = nats_cluster.index_of(_connected(_Holder(conn)))
        finally:
            await engine.release(conn)
        nats_cluster.kill(served_by)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            try:
                reply = await client.call(name, "Echo.Say", {"n": n}, timeout=1.0)
                break
            except (ConnectionFailed, ServiceError, NotFound):
                assert time.monotonic() < start + RECOVER, "RPC never came back"
                await asyncio.sleep(0.05)
        assert reply == {"n": n}
        _failover.record(
            "nats", "rpc call (service's server killed)", time.monotonic() - start, n - 1
        )


async def test_durable_messages_acknowledged_by_the_cluster_all_arrive(
    nats_cluster: NatsCluster,
) -> None:
    """Durable broker, R3 stream (`replicas=3`): the durable subscriber's server is
    killed while messages are published through another; every publish the
    cluster acknowledged reaches the handler at least once (the consumer and
    stream have three copies, and the subscriber pulls again from another
    server), a retried publish at most adds a duplicate."""
    topic_root = unique("hadur")
    topic = f"{topic_root}.x"
    received: set[int] = set()
    resumed: list[float] = []  # when the first message published after the kill arrived
    kill_at = WRITES // 3

    def handler(message: Message) -> None:
        n = int(message.decode())  # type: ignore[call-overload]
        received.add(n)
        if n >= kill_at and not resumed:
            resumed.append(time.monotonic())

    sub_url = nats_cluster.url(members=[0, 1])
    pub_url = nats_cluster.url(members=[2])
    options = {**FAST_NATS, "replicas": 3}
    async with (
        microstd.broker.open(sub_url, **options) as subscriber,
        microstd.broker.open(pub_url, **options) as publisher,
    ):
        await subscriber.subscribe(f"{topic_root}.*", handler, durable=unique("d"))

        async def publish(i: int) -> None:
            await publisher.publish(topic, i)

        kill = _kill_connected(nats_cluster, subscriber)
        killed: list[float] = []

        def kill_and_note() -> None:
            kill()
            killed.append(time.monotonic())

        outcome = await _failover.through_failover(
            publish, total=WRITES, kill_at=kill_at, kill=kill_and_note
        )
        deadline = time.monotonic() + RECOVER
        while not set(outcome.acked) <= received:
            assert time.monotonic() < deadline, f"missing: {sorted(set(outcome.acked) - received)}"
            await asyncio.sleep(0.05)
        _failover.record(
            "nats",
            "durable publish (R3, subscriber's server killed)",
            outcome.failover,
            outcome.failures,
        )
        _failover.record(
            "nats", "durable delivery (R3, subscriber's server killed)", resumed[0] - killed[0]
        )


async def test_registry_registrations_stay_discoverable_and_heartbeats_go_on(
    nats_cluster: NatsCluster,
) -> None:
    """Registry, R3 bucket (`replicas=3`), URL listing the three servers: a registry
    registers nodes, keeps one alive by heartbeats (registering it again, TTL
    2 s, every 0.5 s) and watches the service while the server it is on is
    killed. Registration goes on after a few retries (the failover cost
    recorded); every node registered, before or after the kill, is found
    through that registry and through a registry on another server; the
    heartbeats go on, so the heartbeated node is registered past twice its TTL
    from the kill (a failover longer than the TTL lets it lapse until the next
    heartbeat after it); the watch goes on and reports every
    node registered after the kill, or, as the registry promises for a
    re-read that fails, ends with `ConnectionFailed` (then a new watch reports
    later registrations)."""
    import microstd.registry

    bucket = unique("hareg")
    url = nats_cluster.url(f"bucket={bucket}&replicas=3")
    total, kill_at, ttl = 20, 5, 2.0
    async with microstd.registry.open(url, **FAST_NATS) as registry:
        await registry.register(greeter("hb"), ttl=ttl)
        on = nats_cluster.index_of(_connected(registry))
        others = [i for i in range(len(nats_cluster.nodes)) if i != on]
        other_url = nats_cluster.url(f"bucket={bucket}&replicas=3", members=others)
        beats_after: list[float] = []
        killed: list[float] = []

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(ttl / 4)
                with contextlib.suppress(ConnectionFailed):
                    await registry.register(greeter("hb"), ttl=ttl)
                    if killed:
                        beats_after.append(time.monotonic())

        seen: set[str] = set()

        events = registry.watch("greeter")
        watching = asyncio.create_task(collect_nodes(events, seen))
        beating = asyncio.create_task(heartbeat())
        try:
            await watch_reporting(registry, seen, "w", ttl=60, watching=watching, retry=True)

            async def register(i: int) -> None:
                await registry.register(greeter(f"n{i}"), ttl=60)

            def kill() -> None:
                nats_cluster.kill(on)
                killed.append(time.monotonic())

            outcome = await _failover.through_failover(
                register, total=total, kill_at=kill_at, kill=kill, pause=0.02
            )
            _failover.record(
                "nats",
                "registry register (R3, connected server killed)",
                outcome.failover,
                outcome.failures,
            )
            want = {f"n{i}" for i in range(total)}
            async with microstd.registry.open(other_url, **FAST_NATS) as other:
                for r in (registry, other):
                    found = await eventually(lambda r=r: node_ids(r))
                    assert want <= found, sorted(want - found)
                # Heartbeats went on through the failover: past twice its TTL from
                # the kill, a heartbeat has succeeded and the node is registered,
                # seen through both. (Not at every moment: a failover longer than
                # its 2 s TTL, as a write's can be, lets it lapse until the next
                # heartbeat after the failover registers it again.)
                await asyncio.sleep(max(0.0, killed[0] + 2 * ttl - time.monotonic()))
                deadline = time.monotonic() + RECOVER
                for r in (registry, other):
                    while "hb" not in await eventually(lambda r=r: node_ids(r)):
                        assert time.monotonic() < deadline, "the heartbeated node never came back"
                        await asyncio.sleep(0.05)
                assert beats_after, "no heartbeat succeeded after the kill"
            after = {f"n{i}" for i in range(kill_at, total)}
            deadline = time.monotonic() + RECOVER
            while not after <= seen and not watching.done():
                assert time.monotonic() < deadline, sorted(after - seen)
                await asyncio.sleep(0.05)
            if watching.done():
                # The promise for a re-read that failed: the watch ends with
                # ConnectionFailed, and a new one reports later registrations.
                exc = watching.exception()
                assert isinstance(exc, ConnectionFailed), exc
                _failover.note("nats: the registry watch ended with ConnectionFailed")
                events = registry.watch("greeter")
                watching = asyncio.create_task(collect_nodes(events, seen))
                await watch_reporting(
                    registry, seen, "again", ttl=60, watching=watching, retry=True
                )
            else:
                _failover.note("nats: the registry watch went on across the failover")
        finally:
            try:
                await stop_tasks(beating, watching, expected=(ConnectionFailed,))
            finally:  # closed even when stop_tasks fails; never hiding the body's failure
                await clean_up(events.aclose(), "events.aclose()")  # type: ignore[attr-defined]


LISTS = 30


async def test_listing_keys_goes_on_while_another_server_is_down(
    nats_cluster: NatsCluster,
) -> None:
    """Store, registry and config, R3 buckets, URL listing the three servers: while a
    server the clients are NOT connected to is down, once the buckets answer
    again (a stream it led elects a new leader), every `store.list` (whole, a
    prefix, a page), registry lookup and config load of many in a row succeeds
    and is right: the live keys, sorted, without the deleted ones. (Listing by
    an ephemeral consumer, `kv.keys()` or `watchall()`, timed out about one
    call in three for as long as the server stayed down: the server placed
    some consumers on the dead one.)"""
    import nats as nats_client

    import microstd.registry
    from microstd import config

    bucket = unique("halist")
    url = nats_cluster.url(f"bucket={bucket}&replicas=3")
    reg_url = nats_cluster.url(f"bucket={unique('halistreg')}&replicas=3")
    async with (
        _store(url) as store,
        microstd.registry.open(reg_url, **FAST_NATS) as registry,
    ):
        keys = [f"k{i:02d}" for i in range(12)]
        for key in [*keys, "gone"]:
            await store.write(key, key)
        await store.delete("gone")
        for node in ("a", "b"):
            await registry.register(greeter(node), ttl=60)
        cfg_bucket = unique("halistcfg")
        writer = await nats_client.connect(nats_cluster.url().split(","), connect_timeout=1)
        try:
            kv = await writer.jetstream().create_key_value(bucket=cfg_bucket, replicas=3)
            for key in ("db.host", "db.port", "old"):
                await kv.put(key, b"1")
            await kv.delete("old")
        finally:
            await writer.close()
        source = config.nats(nats_cluster.url(), cfg_bucket, timeout=1.0)
        on = {nats_cluster.index_of(_connected(x)) for x in (store, registry)}
        down = next(i for i in range(len(nats_cluster.nodes)) if i not in on)
        nats_cluster.kill(down)
        await eventually(store.list)
        await eventually(lambda: node_ids(registry))
        await eventually(lambda: _config_read(source))
        for _ in range(LISTS):
            assert await never_hangs(store.list()) == keys
            assert await never_hangs(store.list(prefix="k1")) == keys[10:]
            assert await never_hangs(store.list(limit=3, offset=4)) == keys[4:7]
            assert await never_hangs(node_ids(registry)) == {"a", "b"}
            assert await never_hangs(source.fetch()) == {"db": {"host": "1", "port": "1"}}


async def _config_read(source: Any) -> Any:
    """`source.fetch()`, its `ConfigError` from a failed read raised as `ConnectionFailed`
    (for `eventually`)."""
    from microstd.errors import ConfigError

    try:
        return await source.fetch()
    except ConfigError as exc:
        raise ConnectionFailed(str(exc)) from exc
