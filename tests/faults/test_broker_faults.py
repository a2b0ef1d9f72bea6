"""The broker under server faults, on Redis pub/sub and core NATS.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

import pytest

import microstd.broker
from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import (
    FAST,
    FAST_NATS,
    RECOVER,
    Watcher,
    eventually,
    fails_fast,
    never_hangs,
    wait_until,
)
from microstd.broker import Broker
from microstd.errors import ConnectionFailed

pytestmark = pytest.mark.services

KINDS = ["redis", "nats"]


def _open(kind: str, port: int, **extra: Any) -> Broker:
    if kind == "redis":
        return microstd.broker.open(f"redis://127.0.0.1:{port}/0", **FAST, **extra)
    return microstd.broker.open(f"nats://127.0.0.1:{port}", **{**FAST_NATS, **extra})


async def _delivered(publisher: Broker, topic: str, watcher: Watcher, tag: str) -> None:
    """Publish `tag`-numbered probes until the watcher receives one: the subscription works.

    A publish may fail while the publisher itself reconnects; that is retried too.
    """
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
        if time.monotonic() > deadline:
            raise AssertionError(f"no {tag!r} message delivered within {RECOVER}s")


async def _publish_until_it_fails(publisher: Broker, topic: str) -> None:
    """Publish until a publish fails (the first ones may still be written before the
    client notices the loss), each within the hang bound."""
    for _ in range(50):
        await never_hangs(publisher.publish(topic, "down"))
        await asyncio.sleep(0.05)


async def _subscribed(kind: str, port: int, topic: str) -> tuple[Broker, Watcher]:
    watcher = Watcher()
    broker = _open(kind, port, on_error=watcher.on_error)
    await broker.connect()
    await broker.subscribe(topic, watcher.handler)
    return broker, watcher


@pytest.mark.parametrize("kind", KINDS)
async def test_publish_never_hangs_while_the_server_is_frozen(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server frozen (SIGSTOP): `publish` returns or raises ConnectionFailed within
    its timeout, never hangs (Redis raises; NATS writes to the connection until it
    finds it stale, then raises); once the server thaws, the same subscription
    receives again without reopening."""
    server = servers(kind)
    subscriber, watcher = await _subscribed(kind, server.port, "frozen.t")
    async with _open(kind, server.port) as publisher:
        try:
            await _delivered(publisher, "frozen.t", watcher, "before")
            server.pause()
            try:
                outcomes = []
                for i in range(3):
                    try:
                        await never_hangs(publisher.publish("frozen.t", f"during{i}"))
                        outcomes.append("returned")
                    except ConnectionFailed:
                        outcomes.append("failed")
                if kind == "redis":
                    assert outcomes == ["failed"] * 3
            finally:
                server.resume()
            await _delivered(publisher, "frozen.t", watcher, "after")
        finally:
            await subscriber.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_subscriptions_resume_after_a_restart(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed and restarted on the same port: `publish` fails fast while it is
    down; afterwards the same subscription receives again without reopening, and
    the `on_error` hook was told: ConnectionFailed, then ConnectionRestored.
    Messages published while the server was down are not delivered."""
    server = servers(kind)
    subscriber, watcher = await _subscribed(kind, server.port, "restart.t")
    async with _open(kind, server.port) as publisher:
        try:
            await _delivered(publisher, "restart.t", watcher, "before")
            server.kill()
            with pytest.raises(ConnectionFailed):
                await _publish_until_it_fails(publisher, "restart.t")
            server.start()
            await _delivered(publisher, "restart.t", watcher, "after")
            await wait_until(watcher.reported_loss_and_return)
        finally:
            await subscriber.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_subscriptions_resume_after_a_cut_connection(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Subscriber's connection reset (through the proxy): it reconnects by itself,
    the same subscription receives again, and the hook saw the loss and the return."""
    server = servers(kind)
    proxy = proxies(server)
    subscriber, watcher = await _subscribed(kind, proxy.port, "cut.t")
    async with _open(kind, server.port) as publisher:
        try:
            await _delivered(publisher, "cut.t", watcher, "before")
            proxy.drop()
            await _delivered(publisher, "cut.t", watcher, "after")
            await wait_until(watcher.reported_loss_and_return)
        finally:
            await subscriber.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stalled_subscription_is_noticed_and_resumes(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Subscriber's connection stalled (open, nothing passes): the liveness check
    notices within a few ping intervals and the hook gets ConnectionFailed (the
    subscription does not go quiet unnoticed); once traffic flows, it receives
    again and the hook gets ConnectionRestored."""
    server = servers(kind)
    proxy = proxies(server)
    subscriber, watcher = await _subscribed(kind, proxy.port, "stall.t")
    async with _open(kind, server.port) as publisher:
        try:
            await _delivered(publisher, "stall.t", watcher, "before")
            proxy.stall()
            try:
                await wait_until(lambda: ConnectionFailed in watcher.events)
            finally:
                proxy.resume()
            await _delivered(publisher, "stall.t", watcher, "after")
            await wait_until(watcher.reported_loss_and_return)
        finally:
            await subscriber.close()


async def test_nats_outlives_its_old_reconnect_budget(
    servers: Callable[[str], ServerProcess],
) -> None:
    """NATS server down longer than 60 reconnection attempts (the old budget, after
    which the broker was dead for good): the broker reconnects once it is back."""
    server = servers("nats")
    subscriber, watcher = await _subscribed("nats", server.port, "budget.t")
    async with _open("nats", server.port) as publisher:
        try:
            await _delivered(publisher, "budget.t", watcher, "before")
            server.stop()
            # 60 attempts 0.1 s apart, and then some.
            await asyncio.sleep(60 * FAST_NATS["reconnect_time_wait"] + 3)
            server.start()
            await _delivered(publisher, "budget.t", watcher, "after")
        finally:
            await subscriber.close()


async def test_nats_never_reports_an_unacknowledged_publish_to_a_stream_as_published(
    servers: Callable[[str], ServerProcess],
) -> None:
    """NATS with JetStream frozen (SIGSTOP) before the publisher has read which
    topics its streams keep: a publish to a stream's topic raises ConnectionFailed
    and is not sent (it does not go out as a core publish that no stream
    acknowledged, as it did when an unanswered stream list was taken for "no
    JetStream"); after the thaw, publishes are acknowledged and reach the durable
    subscriber, and the failed one never does."""
    server = servers("nats")
    received: list[object] = []
    async with (
        _open("nats", server.port) as subscriber,
        _open("nats", server.port) as publisher,
    ):
        await subscriber.subscribe(
            "kept.*", lambda m: received.append(m.decode()), durable="unanswered"
        )
        server.pause()
        try:
            await fails_fast(publisher.publish("kept.a", "during"))
        finally:
            server.resume()
        await eventually(lambda: publisher.publish("kept.a", "after"))
        await wait_until(lambda: "after" in received)
        assert set(received) == {"after"}


@pytest.mark.faults_long
@pytest.mark.parametrize("kind", KINDS)
async def test_subscriptions_survive_a_long_outage(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server down for 70 s with the default reconnection settings: subscriptions
    resume and publishing works again, without reopening."""
    server = servers(kind)
    watcher = Watcher()
    url = (
        f"redis://127.0.0.1:{server.port}/0"
        if kind == "redis"
        else f"nats://127.0.0.1:{server.port}"
    )
    async with (
        microstd.broker.open(url, on_error=watcher.on_error) as subscriber,
        microstd.broker.open(url) as publisher,
    ):
        await subscriber.subscribe("long.t", watcher.handler)
        await _delivered(publisher, "long.t", watcher, "before")
        server.stop()
        await asyncio.sleep(70)
        server.start()
        await _delivered(publisher, "long.t", watcher, "after")
        await wait_until(watcher.reported_loss_and_return)


async def test_closing_a_nats_broker_never_hangs_on_a_frozen_server(
    servers: Callable[[str], ServerProcess],
) -> None:
    """NATS frozen (SIGSTOP) with more published than the socket holds: `close()`
    returns within `drain_timeout` (its subscriptions' drain) and then `timeout`
    (nats-py's own close flushes what is pending and
    waits for the socket to drain, which a frozen server never lets happen: it
    hung for good); what was not sent is dropped, as it was never acknowledged,
    and the socket is closed, not left open and closing."""
    server = servers("nats")
    broker = _open("nats", server.port, drain_timeout=1.0)
    body = b"x" * (256 * 1024)
    await broker.subscribe("frozen.sub", lambda m: None)
    await broker.publish("frozen.close", body)  # the subject's stream: looked up once
    server.pause()
    try:
        with contextlib.suppress(ConnectionFailed):
            for _ in range(200):  # 50 MB: more than the kernel's socket buffers
                await never_hangs(broker.publish("frozen.close", body))
        # The subscription's drain gives up after drain_timeout, the close after timeout.
        await never_hangs(broker.close(), 1.0 + FAST_NATS["timeout"] + 5)
        # Nothing left open: a socket left closing would warn here (an error in tests),
        # and no delivery task of the subscription is left waiting.
        del broker
        gc.collect()
        await asyncio.sleep(0)
        waiting = [t for t in asyncio.all_tasks() if "_wait_for_msgs" in repr(t)]
        assert waiting == [], waiting
    finally:
        server.resume()
