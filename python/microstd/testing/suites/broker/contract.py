"""The broker contract (DESIGN.md, "broker"), on the async and the blocking surface.

Fixtures: `broker`, `sync_broker`, `broker_target` (microstd.testing.fixtures);
every handle of one target is on the same bus. microstd runs it on each of
its own backends (tests/contract), a plugin author on theirs
(`pytest --microstd-broker=URL`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import microstd.broker
from microstd.broker import Message
from microstd.errors import Closed, EncodeError, InvalidTopic
from microstd.testing._marks import mark_async_tests
from microstd.testing.tables import BAD_PATTERNS, BAD_TOPICS, ids, raises
from microstd.testing.targets import BrokerTarget


def _keep(bucket: list[Any]) -> Callable[[Message], None]:
    """A handler that appends each message's decoded body to `bucket`."""
    return lambda m: bucket.append(m.decode())


def _keep_suffix(bucket: list[str]) -> Callable[[Message], None]:
    """A handler that appends each message's topic, without its first token, to `bucket`."""
    return lambda m: bucket.append(m.topic.split(".", 1)[1])


def topic(prefix: str = "t") -> str:
    """A topic of its own per test, so tests sharing a server never see each other."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def eventually_sync(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


async def settle(broker: microstd.broker.Broker, base: str) -> None:
    """Publish a marker and wait for it, so everything published before has arrived."""
    seen: list[Message] = []
    sub = await broker.subscribe(f"{base}-settle.m", seen.append)
    await broker.publish(f"{base}-settle.m", b"")
    await eventually(lambda: bool(seen))
    await sub.unsubscribe()


async def test_bodies_headers_and_content_types(broker: microstd.broker.Broker) -> None:
    base = topic()
    got: list[Message] = []
    await broker.subscribe(f"{base}.x", got.append)
    await broker.publish(f"{base}.x", {"id": 1, "items": [1, 2]}, headers={"trace": "abc"})
    await broker.publish(f"{base}.x", b"\x00raw")
    await broker.publish(f"{base}.x", {"j": True}, content_type="application/json")
    await broker.publish(f"{base}.x", b"text", content_type="text/plain")
    await eventually(lambda: len(got) == 4)
    first, raw, js, text = got
    assert first.topic == f"{base}.x"
    assert first.decode() == {"id": 1, "items": [1, 2]}
    assert first.headers == {"trace": "abc"}
    assert first.content_type == "application/msgpack"
    assert (raw.data, raw.content_type, raw.decode()) == (
        b"\x00raw",
        "application/octet-stream",
        b"\x00raw",
    )
    assert js.content_type == "application/json"
    assert js.decode() == {"j": True}
    assert js.headers == {}
    assert text.decode() == "text"


async def test_wildcards_follow_nats_semantics(broker: microstd.broker.Broker) -> None:
    base = topic()
    patterns = ["a.*", "a.>", "*.b", "a.b", "a.*.c", ">"]
    got: dict[str, list[str]] = {p: [] for p in patterns}
    for p in patterns:
        await broker.subscribe(f"{base}.{p}", _keep_suffix(got[p]))
    for t in ["a", "a.b", "a.b.c", "x.b", "a.x.c.d"]:
        await broker.publish(f"{base}.{t}", b"")
    await eventually(lambda: len(got[">"]) == 5)
    await settle(broker, base)
    assert got["a.*"] == ["a.b"]
    assert got["a.>"] == ["a.b", "a.b.c", "a.x.c.d"]
    assert got["*.b"] == ["a.b", "x.b"]
    assert got["a.b"] == ["a.b"]
    assert got["a.*.c"] == ["a.b.c"]
    assert got[">"] == ["a", "a.b", "a.b.c", "x.b", "a.x.c.d"]


async def test_queue_group_delivers_each_message_once(broker: microstd.broker.Broker) -> None:
    base = topic()
    members: list[list[int]] = [[], [], []]
    everyone: list[int] = []
    for bucket in members:
        await broker.subscribe(f"{base}.*", _keep(bucket), queue="q")
    await broker.subscribe(f"{base}.*", lambda m: everyone.append(m.decode()))
    # Same queue name, other pattern: a group of its own, which also gets every message.
    other: list[int] = []
    await broker.subscribe(f"{base}.>", lambda m: other.append(m.decode()), queue="q")
    for i in range(30):
        await broker.publish(f"{base}.n", i)
    await eventually(lambda: sum(map(len, members)) >= 30 and len(everyone) == 30)
    await eventually(lambda: len(other) == 30)
    await settle(broker, base)
    assert sorted(x for b in members for x in b) == list(range(30))
    assert everyone == list(range(30))
    assert sorted(other) == list(range(30))
    assert all(b for b in members), "a member never got a message"


async def test_handler_errors_are_reported_and_subscription_lives(
    broker: microstd.broker.Broker, caplog: pytest.LogCaptureFixture
) -> None:
    base = topic()
    errors: list[tuple[BaseException, object]] = []
    broker.on_error(lambda exc, sub: errors.append((exc, sub)))
    seen: list[int] = []
    others: list[int] = []

    def fragile(m: Message) -> None:
        value = m.decode()
        assert isinstance(value, int)
        if value % 2:
            raise RuntimeError(f"odd {value}")
        seen.append(value)

    async def fragile_async(m: Message) -> None:
        if m.decode() == 3:
            raise ValueError("three")

    sub = await broker.subscribe(f"{base}.e", fragile)
    await broker.subscribe(f"{base}.e", fragile_async)
    await broker.subscribe(f"{base}.e", lambda m: others.append(m.decode()))
    with caplog.at_level(logging.WARNING, logger="microstd.broker"):
        for i in range(6):
            await broker.publish(f"{base}.e", i)
        await eventually(lambda: len(others) == 6 and len(errors) == 4)
    assert seen == [0, 2, 4]
    assert others == list(range(6))
    kinds = sorted(type(e).__name__ for e, _ in errors)
    assert kinds == ["RuntimeError", "RuntimeError", "RuntimeError", "ValueError"]
    assert any(s is sub for _, s in errors)
    assert any("raised" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def test_each_subscription_delivers_in_publish_order(
    broker: microstd.broker.Broker,
) -> None:
    base = topic()
    got_async: list[int] = []
    got_sync: list[int] = []

    async def slowish(m: Message) -> None:
        value = m.decode()
        assert isinstance(value, int)
        if value % 7 == 0:
            await asyncio.sleep(0.001)
        got_async.append(value)

    await broker.subscribe(f"{base}.o", slowish)
    await broker.subscribe(f"{base}.o", lambda m: got_sync.append(m.decode()))
    for i in range(200):
        await broker.publish(f"{base}.o", i)
    await eventually(lambda: len(got_async) == 200 and len(got_sync) == 200)
    assert got_async == list(range(200))
    assert got_sync == list(range(200))


async def test_unsubscribe_stops_delivery_even_from_the_handler(
    broker: microstd.broker.Broker,
) -> None:
    base = topic()
    once: list[int] = []
    kept: list[int] = []
    holder: list[microstd.broker.Subscription] = []

    async def only_once(m: Message) -> None:
        once.append(1)
        await holder[0].unsubscribe()

    holder.append(await broker.subscribe(f"{base}.u", only_once))
    await broker.subscribe(f"{base}.u", lambda m: kept.append(1))
    plain = await broker.subscribe(f"{base}.u", lambda m: None)
    await plain.unsubscribe()
    await plain.unsubscribe()  # idempotent
    await broker.publish(f"{base}.u", b"1")
    await eventually(lambda: len(kept) == 1 and len(once) == 1)
    for _ in range(5):
        await broker.publish(f"{base}.u", b"n")
    await eventually(lambda: len(kept) == 6)
    await settle(broker, base)
    assert once == [1]


async def test_unsubscribe_handles_what_is_already_queued(broker: microstd.broker.Broker) -> None:
    base = topic()
    started = asyncio.Event()
    done: list[int] = []

    async def slow(m: Message) -> None:
        started.set()
        await asyncio.sleep(0.01)
        value = m.decode()
        assert isinstance(value, int)
        done.append(value)

    got: list[int] = []
    sub = await broker.subscribe(f"{base}.q", slow)
    await broker.subscribe(f"{base}.q", lambda m: got.append(1))
    for i in range(20):
        await broker.publish(f"{base}.q", i)
    await eventually(lambda: len(got) == 20)
    await asyncio.wait_for(started.wait(), 10)
    # The first is in its handler, the rest wait in the queue: all are handled.
    await sub.unsubscribe()
    assert done == list(range(20))
    await broker.publish(f"{base}.q", 99)
    await eventually(lambda: len(got) == 21)
    await settle(broker, base)
    assert done == list(range(20))


async def test_bad_topics_and_bodies_raise_and_publish_nothing(
    broker: microstd.broker.Broker,
) -> None:
    base = topic()
    got: list[Message] = []
    await broker.subscribe(f"{base}.>", got.append)
    for bad in ["", f"{base}..x", f"{base}.", f"{base}.*", f"{base}.>", f"{base}.a b"]:
        with pytest.raises(InvalidTopic):
            await broker.publish(bad, b"x")
    for bad in ["", "a..b", "a.>.b", ">.a", ".a"]:
        with pytest.raises(InvalidTopic):
            await broker.subscribe(bad, got.append)
    with pytest.raises(EncodeError):
        await broker.publish(f"{base}.x", {"bad": object()})
    await broker.publish(f"{base}.ok", b"fine")
    await eventually(lambda: len(got) == 1)
    await settle(broker, base)
    assert [m.topic for m in got] == [f"{base}.ok"]


async def test_close_drains_in_flight_handlers(broker_target: BrokerTarget) -> None:
    base = topic()
    done: list[int] = []

    async def slow(m: Message) -> None:
        await asyncio.sleep(0.01)
        value = m.decode()
        assert isinstance(value, int)
        done.append(value)

    async with broker_target.open() as pub:
        sub_broker = broker_target.open()
        await sub_broker.connect()
        await sub_broker.subscribe(f"{base}.d", slow)
        seen: list[int] = []
        await sub_broker.subscribe(f"{base}.d", lambda m: seen.append(1))
        for i in range(5):
            await pub.publish(f"{base}.d", i)
        await eventually(lambda: len(seen) == 5)
        await sub_broker.close()
    assert done == list(range(5))


async def test_queue_group_is_fair_across_connections(broker_target: BrokerTarget) -> None:
    """Two equal members on two connections each get a fair share (within 2x of even)."""
    base = topic()
    n = 200
    shares: list[list[int]] = [[], []]
    async with broker_target.open() as one, broker_target.open() as two:
        for handle, bucket in ((one, shares[0]), (two, shares[1])):
            await handle.subscribe(f"{base}.*", _keep(bucket), queue="w")
        for i in range(n):
            await one.publish(f"{base}.job", i)
        await eventually(lambda: sum(map(len, shares)) >= n)
        await settle(one, base)
    assert sorted(x for b in shares for x in b) == list(range(n))
    assert min(map(len, shares)) >= n // 4, f"unfair queue group: {list(map(len, shares))}"


async def test_drop_overflow_counts_and_spares_other_subscribers(
    broker_target: BrokerTarget,
) -> None:
    base = topic()
    release = asyncio.Event()
    fast: list[int] = []

    async def stuck(m: Message) -> None:
        await release.wait()

    async with (
        broker_target.open(max_pending=2, overflow="drop") as broker,
        broker_target.open() as roomy,
    ):
        slow_sub = await broker.subscribe(f"{base}.s", stuck)
        await roomy.subscribe(f"{base}.s", lambda m: fast.append(1))
        for i in range(20):
            await roomy.publish(f"{base}.s", i)
        await eventually(lambda: len(fast) == 20)
        await eventually(lambda: slow_sub.dropped >= 16)
        await settle(roomy, base)
        # Two queued, and one or two in the handler's batch unless the publisher
        # outran the first wakeup.
        assert slow_sub.dropped in (16, 17, 18)
        release.set()


def test_sync_surface(sync_broker: microstd.broker.SyncBroker) -> None:
    base = topic()
    got: list[object] = []
    group: list[object] = []
    errors: list[BaseException] = []
    sync_broker.on_error(lambda exc, sub: errors.append(exc))

    async def async_handler(m: Message) -> None:
        got.append(("async", m.decode()))

    def boom(m: Message) -> None:
        raise KeyError("boom")

    sub = sync_broker.subscribe(f"{base}.*", lambda m: got.append(m.decode()))
    sync_broker.subscribe(f"{base}.a", async_handler)
    sync_broker.subscribe(f"{base}.a", boom)
    for _ in range(2):
        sync_broker.subscribe(f"{base}.a", lambda m: group.append(m.decode()), queue="g")
    sync_broker.publish(f"{base}.a", {"n": 1})
    eventually_sync(lambda: len(got) == 2 and len(group) == 1 and len(errors) == 1)
    assert sorted(map(repr, got)) == sorted(map(repr, [{"n": 1}, ("async", {"n": 1})]))
    sub.unsubscribe()
    sync_broker.publish(f"{base}.a", 2)
    eventually_sync(lambda: len(group) == 2 and len(got) == 3)
    with pytest.raises(InvalidTopic):
        sync_broker.publish(f"{base}.*", 1)
    with pytest.raises(EncodeError):
        sync_broker.publish(f"{base}.a", {"bad": object()})
    assert isinstance(errors[0], KeyError)


# ---- one table of bad arguments (microstd.testing.tables) -----------------------


@pytest.mark.parametrize(("topic_", "cls", "message"), BAD_TOPICS, ids=ids(BAD_TOPICS))
async def test_bad_topics_raise_the_shared_error(
    broker: microstd.broker.Broker, topic_: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await broker.publish(topic_, b"x")


@pytest.mark.parametrize(("pattern", "cls", "message"), BAD_PATTERNS, ids=ids(BAD_PATTERNS))
async def test_bad_patterns_raise_the_shared_error(
    broker: microstd.broker.Broker, pattern: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        await broker.subscribe(pattern, print)


# ---- close() means closed ------------------------------------------------------


async def test_close_means_closed(broker_target: BrokerTarget) -> None:
    broker = broker_target.open()
    async with broker:
        await broker.publish(f"{topic()}.x", b"1")
    assert broker.closed
    await broker.close()  # idempotent
    for call in (
        broker.connect,
        lambda: broker.publish(f"{topic()}.x", b"1"),
        lambda: broker.subscribe(f"{topic()}.>", print),
    ):
        with pytest.raises(Closed, match="is closed"):
            await call()


def test_sync_close_means_closed(broker_target: BrokerTarget) -> None:
    broker = broker_target.open_sync()
    with broker:
        broker.publish(f"{topic()}.x", b"1")
    assert broker.closed
    broker.close()
    for call in (
        broker.connect,
        lambda: broker.publish(f"{topic()}.x", b"1"),
        lambda: broker.subscribe(f"{topic()}.>", print),
    ):
        with pytest.raises(Closed, match="is closed"):
            call()


mark_async_tests(globals())
