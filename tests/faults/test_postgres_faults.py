"""postgresql:// locks and broker (core and durable) under a server kill and a cut
connection (the store's faults are in test_store_faults.py). Each docstring is a
guarantee docs/guarantees.md quotes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import pytest

import microstd.broker
import microstd.sync
from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import (
    FAST,
    RECOVER,
    Watcher,
    eventually,
    fails_fast,
    never_hangs,
    wait_until,
)
from microstd.broker import Broker, Message
from microstd.errors import ConnectionFailed, ConnectionRestored, LockTimeout

pytestmark = pytest.mark.services


def _url(server: ServerProcess | FaultProxy) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/postgres"


async def test_leases_and_tokens_survive_a_kill(servers: Callable[[str], ServerProcess]) -> None:
    """Server killed and restarted: a lease granted before the kill is still held
    (its row is committed), nobody else gets the lock meanwhile, its holder can
    refresh and release it, and tokens keep increasing."""
    server = servers("postgres")
    async with microstd.sync.open(_url(server), **FAST) as locks:
        lease = await locks.acquire("job", ttl=60.0)
        server.kill()
        await fails_fast(locks.acquire("job", ttl=1.0, wait=0))
        server.start()
        await eventually(lambda: locks.leader("other"))  # the server answers again
        # (not inside `eventually`: LockTimeout is a TimeoutError, which it reads as a hang)
        with pytest.raises(LockTimeout):
            await locks.acquire("job", ttl=1.0, wait=0)
        await eventually(lambda: lease.refresh())
        await lease.release()
        again = await locks.acquire("job", ttl=5.0)
        assert again.token > lease.token
        await again.release()


async def test_broker_reports_the_loss_and_delivers_again(
    servers: Callable[[str], ServerProcess],
) -> None:
    """Server killed and restarted: the broker reports ConnectionFailed then
    ConnectionRestored to on_error, and messages published after it is back are
    delivered to the same subscription (those published while it was down are not)."""
    server = servers("postgres")
    events: list[BaseException] = []
    got: asyncio.Queue[object] = asyncio.Queue()
    async with microstd.broker.open(_url(server), **FAST) as broker:
        broker.on_error(lambda exc, sub: events.append(exc))
        await broker.subscribe("t.*", lambda m: got.put_nowait(m.decode()))
        await broker.publish("t.a", 1)
        assert await never_hangs(got.get()) == 1
        server.kill()
        server.start()
        deadline = asyncio.get_running_loop().time() + 30
        while not any(isinstance(e, ConnectionRestored) for e in events):
            assert asyncio.get_running_loop().time() < deadline, events
            await asyncio.sleep(0.05)
        assert any(isinstance(e, ConnectionFailed) for e in events)
        await eventually(lambda: broker.publish("t.b", 2))
        assert await never_hangs(got.get()) == 2


# --- a cut connection (the proxy resets every open connection) -----------------------


async def _delivered(publisher: Broker, topic: str, watcher: Watcher, tag: str) -> None:
    """Publish `tag`-numbered probes until the watcher receives one."""
    deadline = time.monotonic() + RECOVER
    n = 0
    while True:
        n += 1
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(publisher.publish(topic, f"{tag}{n}"))
        for _ in range(10):
            if any(isinstance(b, str) and b.startswith(tag) for b in watcher.bodies):
                return
            await asyncio.sleep(0.02)
        assert time.monotonic() < deadline, f"no {tag!r} message delivered within {RECOVER}s"


async def _settled(broker: Broker, durable: str) -> None:
    """Every message of `durable` is acked: nothing pending, nothing unacked."""
    deadline = time.monotonic() + RECOVER
    while True:
        with contextlib.suppress(ConnectionFailed):
            infos = {d.name: d for s in await broker.streams() for d in s.durables}
            if (infos[durable].pending, infos[durable].unacked) == (0, 0):
                return
        assert time.monotonic() < deadline, "messages left unacked"
        await asyncio.sleep(0.05)


async def test_core_subscriptions_resume_after_a_cut_connection(
    servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Subscriber's connections reset (through the proxy): the listening connection
    reconnects by itself, the same subscription receives again, and the hook was
    told: ConnectionFailed, then ConnectionRestored."""
    server = servers("postgres")
    proxy = proxies(server)
    watcher = Watcher()
    async with (
        microstd.broker.open(_url(proxy), **FAST, on_error=watcher.on_error) as subscriber,
        microstd.broker.open(_url(server), **FAST) as publisher,
    ):
        await subscriber.subscribe("cut.t", watcher.handler)
        await _delivered(publisher, "cut.t", watcher, "before")
        proxy.drop()
        await _delivered(publisher, "cut.t", watcher, "after")
        await wait_until(watcher.reported_loss_and_return)


async def test_a_durable_subscriber_loses_nothing_across_cut_connections(
    servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """A durable subscriber's connections reset three times while it works through
    300 messages: every message is handled (at least once: an ack lost with its
    connection means a redelivery), the subscription goes on by itself, and in the
    end every message is acked."""
    server = servers("postgres")
    proxy = proxies(server)
    handled: list[int] = []
    async with (
        microstd.broker.open(_url(proxy), **FAST) as subscriber,
        microstd.broker.open(_url(server), **FAST) as publisher,
    ):

        async def work(m: Message) -> None:
            await asyncio.sleep(0.002)
            handled.append(m.decode())  # type: ignore[arg-type]

        await subscriber.subscribe("jobs.*", work, durable="jobs", ack_wait=2.0, max_inflight=20)
        for i in range(300):
            await publisher.publish("jobs.n", i)
        for cut_at in (50, 120, 200):
            await wait_until(lambda n=cut_at: len(handled) >= n)  # type: ignore[misc]
            proxy.drop()
        await wait_until(lambda: set(handled) == set(range(300)))
        await _settled(publisher, "jobs")


async def test_a_publish_that_returned_through_a_cut_is_kept(
    servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """A publisher's connections reset between publishes to a durable: a publish fails
    fast or returns, never hangs; every publish that returned is delivered to the
    durable (it was committed), one that raised may or may not be (ambiguous)."""
    server = servers("postgres")
    proxy = proxies(server)
    returned: list[int] = []
    got: list[int] = []
    async with (
        microstd.broker.open(_url(proxy), **FAST) as publisher,
        microstd.broker.open(_url(server), **FAST) as subscriber,
    ):
        sub = await subscriber.subscribe("kept.*", lambda m: got.append(m.decode()), durable="k")
        await sub.unsubscribe()  # the durable exists; nobody reads while publishing
        for i in range(60):
            if i % 15 == 7:
                proxy.drop()
            with contextlib.suppress(ConnectionFailed):
                await never_hangs(publisher.publish("kept.n", i))
                returned.append(i)
        assert len(returned) >= 50  # each cut costs at most the publish in flight
        await subscriber.subscribe("kept.*", lambda m: got.append(m.decode()), durable="k")
        await wait_until(lambda: set(returned) <= set(got))
        assert set(got) <= set(range(60))


async def test_durable_messages_survive_a_kill(servers: Callable[[str], ServerProcess]) -> None:
    """Server killed and restarted with messages queued and in hand: the same durable
    subscriber (not reopened) handles every message published before the kill, and
    each is acked in the end (messages are rows; an unacked one comes back after
    ack_wait)."""
    server = servers("postgres")
    gate = asyncio.Event()
    handled: list[int] = []
    async with microstd.broker.open(_url(server), **FAST) as broker:

        async def work(m: Message) -> None:
            await gate.wait()
            handled.append(m.decode())  # type: ignore[arg-type]

        await broker.subscribe("kill.*", work, durable="k", ack_wait=2.0, max_inflight=5)
        for i in range(20):
            await broker.publish("kill.n", i)
        server.kill()
        server.start()
        gate.set()
        await wait_until(lambda: set(handled) == set(range(20)))
        await _settled(broker, "k")


async def test_a_lease_survives_a_cut_connection(
    servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Holder's connections reset: the lease is a row, so it is still held (a rival
    cannot take it), and the holder can refresh it (the first call may fail fast
    while the pool replaces its connection) and release it; tokens keep increasing."""
    server = servers("postgres")
    proxy = proxies(server)
    async with (
        microstd.sync.open(_url(proxy), **FAST) as locks,
        microstd.sync.open(_url(server), **FAST) as rivals,
    ):
        lease = await locks.acquire("cut-job", ttl=30.0)
        proxy.drop()
        with pytest.raises(LockTimeout):
            await rivals.acquire("cut-job", ttl=1.0, wait=0)
        await eventually(lambda: lease.refresh())
        await eventually(lambda: lease.release())
        again = await rivals.acquire("cut-job", ttl=5.0, wait=0)
        assert again.token > lease.token
        await again.release()


async def test_a_leader_keeps_leading_across_a_cut_connection(
    servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Leader's connections reset: its renewals carry on over new connections, so it
    is still the leader after the lease it held at the cut would have run out, and
    `lost` never fired."""
    server = servers("postgres")
    proxy = proxies(server)
    async with (
        microstd.sync.open(_url(proxy), **FAST) as locks,
        microstd.sync.open(_url(server), **FAST) as rivals,
    ):
        leadership = await locks.elect("cut-leader", candidate="a", ttl=3.0)
        ends = time.time() + 3.0  # at the latest, the lease it holds now runs out
        for _ in range(3):
            proxy.drop()
            await asyncio.sleep(0.3)  # cuts spread over a renewal interval
        await wait_until(lambda: time.time() > ends + 0.5)
        assert not leadership.lost.is_set()
        # The row says so too: its lease was renewed past the one held at the cut.
        assert await eventually(lambda: rivals.leader("cut-leader")) == "a"
        await leadership.resign()
