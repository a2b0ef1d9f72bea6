"""Durable subscriptions (at least once) on Redis streams, NATS JetStream and
RabbitMQ quorum queues under a server kill and restart (data kept: Redis with
`appendonly yes` / `appendfsync always`, NATS with its JetStream store
directory, RabbitMQ with its node directory), and under cut connections.
postgresql:// has the same tests in test_postgres_faults.py. Each docstring is
a guarantee docs/guarantees.md quotes.

RabbitMQ killed and restarted: the durable's quorum queue must have existed on
the node for half a second before the kill. RabbitMQ 3.10 (Ra 2.2) saves a new
quorum queue's Raft registration lazily (`names.dets`, `auto_save` 500 ms): a
node killed within that window finds the queue unregistered at restart, starts
a new, empty member for it (the old member's log, with the messages, is left on
disk), and that member, being new, waits for an election nobody calls: every
consume then blocks until the node closes the connection (541 INTERNAL_ERROR,
about 65 s later), again and again. No AMQP request can repair that, so the
test waits out the window, as any queue that existed before a crash has."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio

import microstd.broker
from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import FAST, FAST_NATS, RECOVER, never_hangs, wait_until
from microstd.broker import Broker, Message
from microstd.errors import ConnectionFailed

pytestmark = pytest.mark.services

KINDS = ["redis", "nats"]


def _open(kind: str, port: int) -> Broker:
    if kind == "redis":
        return microstd.broker.open(f"redis://127.0.0.1:{port}/0", **FAST)
    if kind == "amqp":
        return microstd.broker.open(f"amqp://guest:guest@127.0.0.1:{port}/", **FAST)
    return microstd.broker.open(f"nats://127.0.0.1:{port}", **FAST_NATS)


def _server(kind: str, request: pytest.FixtureRequest) -> ServerProcess:
    """A private server of `kind`, or for RabbitMQ (slow to start) the session's node."""
    if kind == "amqp":
        return request.getfixturevalue("rabbitmq_proc")  # type: ignore[no-any-return]
    return request.getfixturevalue("servers")(kind)  # type: ignore[no-any-return]


async def _settled(broker: Broker, durable: str) -> None:
    """Every message of `durable` is acked: nothing pending, nothing unacked (on
    AMQP, which cannot count unacked messages, nothing waiting in its queue)."""
    deadline = time.monotonic() + RECOVER
    last: Any = None
    while True:
        with contextlib.suppress(ConnectionFailed):
            infos = {d.name: d for s in await never_hangs(broker.streams()) for d in s.durables}
            last = infos[durable]
            if (last.pending, last.unacked or 0) == (0, 0):
                return
        assert time.monotonic() < deadline, f"messages left unacked: {last}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", [*KINDS, "amqp"])
async def test_durable_messages_survive_a_restart(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed and restarted with its data kept, with messages queued and in
    hand: the same durable subscriber (not reopened) handles every message
    published before the kill, and each is acked in the end (an ack lost with
    the server means a redelivery after ack_wait)."""
    server = servers(kind)
    gate = asyncio.Event()
    handled: list[int] = []
    async with _open(kind, server.port) as broker:

        async def work(m: Message) -> None:
            await gate.wait()
            handled.append(m.decode())  # type: ignore[arg-type]

        await broker.subscribe("kill.*", work, durable="k", ack_wait=2.0, max_inflight=5)
        if kind == "amqp":
            await asyncio.sleep(1.0)  # RabbitMQ registers a new queue lazily (module docstring)
        for i in range(20):
            await broker.publish("kill.n", i)
        server.kill()
        server.start()
        gate.set()
        await wait_until(lambda: set(handled) == set(range(20)))
        await _settled(broker, "k")


@pytest.mark.parametrize("kind", [*KINDS, "amqp"])
async def test_a_durable_subscriber_loses_nothing_across_cut_connections(
    kind: str, request: pytest.FixtureRequest, proxies: Callable[..., FaultProxy]
) -> None:
    """A durable subscriber's connections reset three times while it works through
    300 messages: every message is handled (at least once: an ack lost with its
    connection means a redelivery), the subscription goes on by itself, and in the
    end every message is acked."""
    server = _server(kind, request)
    proxy = proxies(server)
    tag = f"j{uuid.uuid4().hex[:8]}"  # the RabbitMQ node is shared by the session
    handled: list[int] = []
    async with _open(kind, proxy.port) as subscriber, _open(kind, server.port) as publisher:

        async def work(m: Message) -> None:
            await asyncio.sleep(0.002)
            handled.append(m.decode())  # type: ignore[arg-type]

        await subscriber.subscribe(f"{tag}.*", work, durable=tag, ack_wait=2.0, max_inflight=20)
        for i in range(300):
            await publisher.publish(f"{tag}.n", i)
        for cut_at in (50, 120, 200):
            await wait_until(lambda n=cut_at: len(handled) >= n)  # type: ignore[misc]
            proxy.drop()
        await wait_until(lambda: set(handled) == set(range(300)))
        await _settled(subscriber, tag)  # AMQP: only the subscriber's broker knows the durable


@pytest.mark.parametrize("kind", [*KINDS, "amqp"])
async def test_stream_listing_on_a_cut_connection_fails_as_connection_failed(
    kind: str, request: pytest.FixtureRequest, proxies: Callable[..., FaultProxy]
) -> None:
    """`broker.streams()` right after the broker's connections were reset either
    answers or raises `ConnectionFailed`, never the client library's own error
    (Redis's stream list escaped as `redis.exceptions.ConnectionError`), and
    answers again once the connection is back."""
    server = _server(kind, request)
    proxy = proxies(server)
    tag = f"l{uuid.uuid4().hex[:8]}"
    async with _open(kind, proxy.port) as broker:

        async def work(m: Message) -> None:
            pass

        await broker.subscribe(f"{tag}.*", work, durable=tag, ack_wait=2.0)
        await broker.publish(f"{tag}.n", 1)
        for _ in range(5):
            proxy.drop()
            with contextlib.suppress(ConnectionFailed):
                await never_hangs(broker.streams())
        await _settled(broker, tag)


async def test_a_redis_durable_whose_group_was_lost_is_made_again(
    servers: Callable[[str], ServerProcess],
) -> None:
    """Redis lost the durable's stream, group and definitions while its subscriber
    reads (here FLUSHALL; in production a failover to a replica that never had
    them, or a restart without persistence): the subscriber writes them back
    by itself (reads failed with NOGROUP for ever before), and every message
    published after that is delivered and acked. Messages published between
    the loss and the repair are not retained."""
    server = servers("redis")
    handled: list[int] = []
    async with _open("redis", server.port) as broker:

        async def work(m: Message) -> None:
            handled.append(m.decode())  # type: ignore[arg-type]

        await broker.subscribe("lost.*", work, durable="g", ack_wait=2.0)
        await broker.publish("lost.n", 0)
        await wait_until(lambda: handled == [0])
        raw = redis.asyncio.Redis(port=server.port)
        try:
            await raw.flushall()
        finally:
            await raw.aclose()

        async def repaired() -> bool:
            infos = await never_hangs(broker.streams())
            return any(d.name == "g" for s in infos for d in s.durables)

        deadline = time.monotonic() + RECOVER
        while not await repaired():
            assert time.monotonic() < deadline, "the durable was not made again"
            await asyncio.sleep(0.05)
        for i in range(1, 11):
            await broker.publish("lost.n", i)
        await wait_until(lambda: set(handled) == set(range(11)))
        await _settled(broker, "g")


@pytest.mark.parametrize("what", ["stream", "durable"])
async def test_a_redis_durable_deleted_on_purpose_stays_deleted(
    servers: Callable[[str], ServerProcess], what: str
) -> None:
    """A stream or a durable deleted while a subscriber of it reads is not made
    again by that subscriber, as one lost with the server's data is; a new
    subscribe makes it again."""
    server = servers("redis")
    async with _open("redis", server.port) as broker:

        async def work(m: Message) -> None:
            pass

        await broker.subscribe("gone.*", work, durable="g", ack_wait=2.0)
        [stream] = [s.name for s in await broker.streams()]
        if what == "stream":
            await broker.delete_stream(stream)
        else:
            await broker.delete_durable(stream, "g")
        await asyncio.sleep(1.5)  # the subscriber reads every 0.25 s: it found its group gone
        assert [d.name for s in await broker.streams() for d in s.durables] == []
        if what == "stream":
            assert await broker.streams() == []
        await broker.subscribe("gone.*", work, durable="g", ack_wait=2.0)
        assert [d.name for s in await broker.streams() for d in s.durables] == ["g"]
