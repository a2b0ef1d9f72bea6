"""The durable-subscription contract, run on every backend that has durable streams.

At least once: a durable subscription's messages wait for it, are redelivered
until acked (to another member if one died), go to a dead-letter topic after
`max_deliver`, respect their stream's retention, and survive a subscriber
stopping. Each test works on topics and durable names of its own, so backends
on a shared server stay independent.

To add a backend, add it to `DURABLE_BACKENDS` (and to `PROCESS_BACKENDS` if
its streams outlive a process, which adds the SIGKILL / SIGTERM tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import microstd.broker
from microstd.broker import (
    DEAD_LETTER_DELIVERIES,
    DEAD_LETTER_DURABLE,
    DEAD_LETTER_ERROR,
    DEAD_LETTER_ID,
    DEAD_LETTER_TOPIC,
    Message,
)
from microstd.errors import InvalidTopic, NotSupported

HERE = Path(__file__).parent

Spec = Callable[[pytest.FixtureRequest, Path], str]

#: Backend id -> the URL of a broker for one test (handles opened on it share streams).
DURABLE_BACKENDS: dict[str, Spec] = {
    "memory": lambda request, tmp: f"memory://d{uuid.uuid4().hex}",
    "memory-python": lambda request, tmp: f"memory://d{uuid.uuid4().hex}?impl=python",
    "file": lambda request, tmp: f"file://{tmp}/broker.db",
    "postgres": lambda request, tmp: (
        f"{request.getfixturevalue('postgres_url')}?table=d{uuid.uuid4().hex[:12]}"
    ),
    "amqp": lambda request, tmp: str(request.getfixturevalue("amqp_url")),
    "nats": lambda request, tmp: str(request.getfixturevalue("nats_url")),
    "redis": lambda request, tmp: (
        str(request.getfixturevalue("redis_url")) + f"?prefix=t{uuid.uuid4().hex[:8]}:"
    ),
    "redis-cluster": lambda request, tmp: (
        str(request.getfixturevalue("redis_cluster_url")) + f"?prefix=t{uuid.uuid4().hex[:8]}:"
    ),
}
#: Backends whose streams outlive the process: the multi-process tests run on these.
PROCESS_BACKENDS: list[str] = ["file", "postgres", "amqp", "nats", "redis"]
#: Per backend, subscribe options it cannot offer (each must raise NotSupported).
UNSUPPORTED: dict[str, list[dict[str, Any]]] = {
    "amqp": [{"start": "first"}, {"start": dt.datetime.now(dt.timezone.utc)}, {"start": 5}],
    "redis": [{"start": 5}],
    "redis-cluster": [{"start": 5}],
}
#: Per backend, the stream and durable counts it cannot tell (reported as None).
UNCOUNTED: dict[str, set[str]] = {
    "amqp": {"messages", "unacked", "redelivered", "dead_lettered"},
    "nats": {"consumers"},
}


@pytest.fixture(
    params=[
        pytest.param(b, marks=[pytest.mark.cluster, pytest.mark.services])
        if b == "redis-cluster"
        else b
        for b in DURABLE_BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return DURABLE_BACKENDS[backend](request, tmp_path)


@pytest.fixture
async def broker(url: str) -> AsyncIterator[microstd.broker.Broker]:
    async with microstd.broker.open(url) as b:
        yield b


def names(prefix: str = "d") -> tuple[str, str]:
    """A topic base and a durable name no other test uses."""
    tag = uuid.uuid4().hex[:10]
    return f"{prefix}{tag}", f"{prefix}{tag}"


async def eventually(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def quiet(broker: microstd.broker.Broker, base: str) -> None:
    """Publish and receive a core marker: what was published before has arrived."""
    seen: list[Message] = []
    sub = await broker.subscribe(f"{base}-quiet.m", seen.append)
    await broker.publish(f"{base}-quiet.m", b"")
    await eventually(lambda: bool(seen))
    await sub.unsubscribe()


async def test_backlog_waits_for_the_durable_and_comes_in_order(
    broker: microstd.broker.Broker, url: str
) -> None:
    base, name = names()
    got: list[int] = []
    sub = await broker.subscribe(f"{base}.*", lambda m: got.append(m.decode()), durable=name)
    await sub.unsubscribe()
    live: list[int] = []
    await broker.subscribe(f"{base}.*", lambda m: live.append(m.decode()))
    for i in range(50):
        await broker.publish(f"{base}.n", i)  # nobody of the durable is running
    await eventually(lambda: len(live) == 50)
    assert got == []
    async with microstd.broker.open(url) as again:
        ids: list[str] = []

        def handle(m: Message) -> None:
            assert m.id is not None
            ids.append(m.id)
            got.append(m.decode())  # type: ignore[arg-type]

        await again.subscribe(f"{base}.*", handle, durable=name)
        await eventually(lambda: len(got) == 50)
        await quiet(again, base)
    assert got == list(range(50))
    assert len(set(ids)) == 50


async def test_manual_ack_nack_term_and_in_progress(broker: microstd.broker.Broker) -> None:
    base, name = names()
    seen: list[tuple[str, int, str | None]] = []

    def handle(m: Message) -> None:
        kind = m.decode()
        assert isinstance(kind, str)
        seen.append((kind, m.delivery_count, m.id))
        if kind == "ack":
            m.ack()
            m.ack()  # twice: a no-op
            m.nack()  # after an ack: a no-op
        elif kind == "nack" and m.delivery_count == 1:
            m.nack(delay=0)
        elif kind == "nack":
            m.ack()
        elif kind == "term":
            m.term()
        elif kind == "silent" and m.delivery_count > 1:
            m.ack()
        # "silent" on its first delivery: never settled, so redelivered after ack_wait

    await broker.subscribe(
        f"{base}.m", handle, durable=name, ack="manual", ack_wait=0.5, max_inflight=10
    )
    for kind in ("ack", "nack", "term", "silent"):
        await broker.publish(f"{base}.m", kind)
    await eventually(lambda: sum(1 for k, _, _ in seen if k == "silent") == 2)
    await asyncio.sleep(1.2)  # two ack_waits: anything unsettled would be back by now
    by_kind: dict[str, list[tuple[int, str | None]]] = {}
    for kind, count, msgid in seen:
        by_kind.setdefault(kind, []).append((count, msgid))
    assert [c for c, _ in by_kind["ack"]] == [1]
    assert [c for c, _ in by_kind["term"]] == [1]
    assert [c for c, _ in by_kind["nack"]] == [1, 2]
    assert [c for c, _ in by_kind["silent"]] == [1, 2]
    for deliveries in by_kind.values():
        assert len({msgid for _, msgid in deliveries}) == 1  # the id is stable


async def test_in_progress_extends_ack_wait(broker: microstd.broker.Broker) -> None:
    base, name = names()
    deliveries: list[int] = []

    async def slow(m: Message) -> None:
        deliveries.append(m.delivery_count)
        for _ in range(8):  # 1.2 s of work against a 0.5 s ack_wait
            await asyncio.sleep(0.15)
            m.in_progress()

    await broker.subscribe(f"{base}.w", slow, durable=name, ack_wait=0.5)
    await broker.publish(f"{base}.w", b"work")
    await eventually(lambda: bool(deliveries))
    await asyncio.sleep(2.0)  # done after 1.2 s, acked on return; nothing comes back
    assert deliveries == [1]


async def test_auto_ack_raise_nacks_with_backoff(broker: microstd.broker.Broker) -> None:
    base, name = names()
    times: list[float] = []
    errors: list[BaseException] = []
    broker.on_error(lambda exc, sub: errors.append(exc))

    def flaky(m: Message) -> None:
        times.append(time.monotonic())
        if m.delivery_count < 3:
            raise RuntimeError(f"attempt {m.delivery_count}")

    await broker.subscribe(f"{base}.f", flaky, durable=name, backoff=[0.2, 0.4])
    await broker.publish(f"{base}.f", b"x")
    await eventually(lambda: len(times) == 3)
    await asyncio.sleep(0.8)
    assert len(times) == 3  # the third delivery returned, so it was acked
    assert times[1] - times[0] >= 0.2 * 0.9
    assert times[2] - times[1] >= 0.4 * 0.9
    assert [str(e) for e in errors] == ["attempt 1", "attempt 2"]


async def test_poison_message_goes_to_the_dead_letter_topic(
    broker: microstd.broker.Broker, backend: str
) -> None:
    base, name = names()
    attempts: list[int] = []
    dead: list[Message] = []
    await broker.subscribe(f"{base}-dlq.>", dead.append)

    def poison(m: Message) -> None:
        attempts.append(m.delivery_count)
        raise ValueError("cannot parse order")

    await broker.subscribe(
        f"{base}.orders", poison, durable=name, max_deliver=3, dead_letter=f"{base}-dlq.orders"
    )
    await broker.publish(f"{base}.orders", {"id": 7}, headers={"trace": "t1"})
    await eventually(lambda: bool(dead))
    await asyncio.sleep(0.5)
    assert attempts == [1, 2, 3]
    letter = dead[0]
    assert len(dead) == 1
    assert letter.decode() == {"id": 7}
    assert letter.content_type == "application/msgpack"
    assert letter.headers["trace"] == "t1"
    assert letter.headers[DEAD_LETTER_TOPIC] == f"{base}.orders"
    assert letter.headers[DEAD_LETTER_ERROR] == "ValueError: cannot parse order"
    assert letter.headers[DEAD_LETTER_DELIVERIES] == "3"
    assert letter.headers[DEAD_LETTER_DURABLE] == name
    assert letter.headers[DEAD_LETTER_ID]
    infos = {d.name: d for s in await broker.streams() for d in s.durables}
    if backend not in UNCOUNTED:
        assert infos[name].dead_lettered == 1
        assert infos[name].unacked == 0
    else:
        assert infos[name].pending == 0


def break_dead_letters(broker: microstd.broker.Broker, topic: str) -> list[bool]:
    """Make publishing to `topic` fail while the returned switch holds True.

    Patches the publish a durable's settler is given (at subscribe time, so
    call this before subscribing); every other publish goes through.
    """
    failing = [True]
    # postgresql:// hands its durable engine the publish when the broker is built.
    owner: Any = getattr(broker, "_durables", None)
    attr = "_publish"
    if owner is None or not hasattr(owner, attr):
        owner, attr = broker, "_publish_raw"
    real = getattr(owner, attr)

    async def publish(t: str, data: bytes, headers: dict[str, str], content_type: str) -> None:
        if t == topic and failing[0]:
            raise ConnectionError("dead-letter topic unreachable")
        await real(t, data, headers, content_type)

    setattr(owner, attr, publish)
    return failing


async def test_a_failed_dead_letter_publish_frees_its_slot_and_is_tried_again(
    broker: microstd.broker.Broker,
) -> None:
    """The in-flight slot of a message whose dead-letter publish failed is released
    (the durable keeps pulling), and the message is dead-lettered later, not lost."""
    base, name = names()
    dlq = f"{base}-dlq.p"
    failing = break_dead_letters(broker, dlq)
    dead: list[Message] = []
    await broker.subscribe(f"{base}-dlq.>", dead.append)
    handled: list[int] = []

    def poison(m: Message) -> None:
        handled.append(m.decode())  # type: ignore[arg-type]
        raise ValueError("cannot parse")

    await broker.subscribe(
        f"{base}.p",
        poison,
        durable=name,
        max_deliver=1,
        max_inflight=1,
        ack_wait=1.0,
        dead_letter=dlq,
    )
    for i in range(4):
        await broker.publish(f"{base}.p", i)
    # Each failed dead-letter publish held the only slot: the next message came
    # only if that slot was given back.
    await eventually(lambda: sorted(handled) == [0, 1, 2, 3])
    assert not dead
    failing[0] = False
    await eventually(lambda: len(dead) >= 4)
    await quiet(broker, base)
    assert sorted(m.decode() for m in dead) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert sorted(handled) == [0, 1, 2, 3]  # past max_deliver: never handled again


async def test_a_terminated_message_whose_dead_letter_failed_is_not_handled_again(
    broker: microstd.broker.Broker,
) -> None:
    """A message the handler gave up on early (`term()`, deliveries to spare) and
    whose dead-letter publish failed comes back only to be dead-lettered again:
    the handler never sees it twice."""
    base, name = names()
    dlq = f"{base}-dlq.t"
    failing = break_dead_letters(broker, dlq)
    dead: list[Message] = []
    await broker.subscribe(f"{base}-dlq.>", dead.append)
    handled: list[tuple[int, int]] = []

    def handle(m: Message) -> None:
        handled.append((m.decode(), m.delivery_count))  # type: ignore[arg-type]
        m.term()

    await broker.subscribe(
        f"{base}.t",
        handle,
        durable=name,
        max_deliver=5,
        ack_wait=1.0,
        dead_letter=dlq,
    )
    for i in range(3):
        await broker.publish(f"{base}.t", i)
    await eventually(lambda: len(handled) >= 3)
    # Long enough for each message to come back at least once after ack_wait.
    await asyncio.sleep(2.5)
    assert not dead
    failing[0] = False
    await eventually(lambda: len(dead) >= 3)
    await quiet(broker, base)
    assert sorted(m.decode() for m in dead) == [0, 1, 2]  # type: ignore[type-var]
    assert sorted(handled) == [(0, 1), (1, 1), (2, 1)]


async def test_term_dead_letters_and_unacked_last_delivery_too(
    broker: microstd.broker.Broker,
) -> None:
    base, name = names()
    dead: list[Message] = []
    await broker.subscribe(f"{base}-dlq.>", dead.append)

    def handle(m: Message) -> None:
        if m.decode() == "term":
            m.term()
        # "ignore" is never acked: after its last allowed delivery it is given up on

    await broker.subscribe(
        f"{base}.t",
        handle,
        durable=name,
        ack="manual",
        ack_wait=0.3,
        max_deliver=2,
        dead_letter=f"{base}-dlq.t",
    )
    await broker.publish(f"{base}.t", "term")
    await broker.publish(f"{base}.t", "ignore")
    await eventually(lambda: len(dead) == 2)
    errors = {m.decode(): m.headers[DEAD_LETTER_ERROR] for m in dead}
    assert errors == {"term": "terminated", "ignore": "no ack within ack_wait"}
    counts = {m.decode(): m.headers[DEAD_LETTER_DELIVERIES] for m in dead}
    assert counts == {"term": "1", "ignore": "3"}


async def test_a_stuck_member_s_message_goes_to_another_after_ack_wait(
    broker: microstd.broker.Broker, url: str
) -> None:
    base, name = names()
    release = asyncio.Event()
    first: list[tuple[str | None, int]] = []
    second: list[tuple[str | None, int]] = []

    async def stuck(m: Message) -> None:
        first.append((m.id, m.delivery_count))
        await release.wait()

    await broker.subscribe(f"{base}.s", stuck, durable=name, ack_wait=0.5, queue="workers")
    await broker.publish(f"{base}.s", b"job")
    await eventually(lambda: bool(first))
    async with microstd.broker.open(url) as other:
        await other.subscribe(
            f"{base}.s",
            lambda m: second.append((m.id, m.delivery_count)),
            durable=name,
            ack_wait=0.5,
            queue="workers",
        )
        await eventually(lambda: bool(second))
        # The same message, again; a backend may have tried the stuck member once more.
        [(msgid, count)] = second
        assert msgid == first[0][0]
        assert count >= 2
        release.set()
        await quiet(other, base)


async def test_group_members_share_fairly(broker: microstd.broker.Broker, url: str) -> None:
    base, name = names()
    n = 200
    shares: list[list[int]] = [[], []]
    async with microstd.broker.open(url) as other:
        for handle, bucket in ((broker, shares[0]), (other, shares[1])):
            await handle.subscribe(
                f"{base}.*",
                lambda m, b=bucket: b.append(m.decode()),
                durable=name,
                max_inflight=10,
            )
        for i in range(n):
            await broker.publish(f"{base}.job", i)
        await eventually(lambda: sum(map(len, shares)) >= n)
        await quiet(broker, base)
    assert sorted(x for b in shares for x in b) == list(range(n))
    assert min(map(len, shares)) >= n // 4, f"unfair: {list(map(len, shares))}"


async def test_retention_limits(broker: microstd.broker.Broker, url: str) -> None:
    base, name = names()
    stream = f"s{name}"
    info = await broker.add_stream(stream, f"{base}.>", max_count=3)
    assert info.limits.max_count == 3
    assert list(info.subjects) == [f"{base}.>"]
    sub = await broker.subscribe(f"{base}.>", lambda m: None, durable=name)
    await sub.unsubscribe()
    for i in range(5):
        await broker.publish(f"{base}.c", i)
    got: list[int] = []
    sub = await broker.subscribe(f"{base}.>", lambda m: got.append(m.decode()), durable=name)
    await eventually(lambda: len(got) == 3)
    await quiet(broker, base)
    assert got == [2, 3, 4]
    await sub.unsubscribe()

    # Age: what is older than max_age is gone (limits declared before the durable).
    await broker.delete_stream(stream)
    await broker.add_stream(stream, f"{base}.>", max_age=0.3)
    sub = await broker.subscribe(f"{base}.>", lambda m: None, durable=f"{name}a")
    await sub.unsubscribe()
    await broker.publish(f"{base}.a", "old")
    await asyncio.sleep(0.8)
    await broker.publish(f"{base}.a", "new")
    got.clear()
    await broker.subscribe(f"{base}.>", lambda m: got.append(m.decode()), durable=f"{name}a")
    await eventually(lambda: bool(got))
    await quiet(broker, base)
    assert got == ["new"]
    [info] = [s for s in await broker.streams() if s.name == stream]
    assert info.limits.max_age == pytest.approx(0.3)
    await broker.delete_stream(stream)
    assert stream not in [s.name for s in await broker.streams()]


async def test_retention_by_bytes(broker: microstd.broker.Broker) -> None:
    base, name = names()
    stream = f"s{name}"
    await broker.add_stream(stream, f"{base}.>", max_bytes=4096)
    sub = await broker.subscribe(f"{base}.>", lambda m: None, durable=name)
    await sub.unsubscribe()
    for i in range(10):
        await broker.publish(f"{base}.b", bytes([i]) * 1000)
    got: list[bytes] = []
    await broker.subscribe(f"{base}.>", lambda m: got.append(m.data), durable=name)
    await eventually(lambda: len(got) >= 2)
    await quiet(broker, base)
    # About four 1 kB messages fit; the oldest went first and the newest stayed.
    assert 2 <= len(got) <= 4
    assert got[-1] == bytes([9]) * 1000
    assert [g[0] for g in got] == list(range(10 - len(got), 10))
    await broker.delete_stream(stream)


async def test_start_positions(broker: microstd.broker.Broker, backend: str) -> None:
    base, name = names()
    stream = f"s{name}"
    await broker.add_stream(stream, f"{base}.>")
    # A durable that exists from the start, so every backend retains what follows.
    keeper = await broker.subscribe(f"{base}.>", lambda m: None, durable=f"{name}k")
    await keeper.unsubscribe()
    for i in range(3):
        await broker.publish(f"{base}.p", i)
    await asyncio.sleep(0.05)
    middle = dt.datetime.now(dt.timezone.utc)
    await asyncio.sleep(0.05)
    for i in range(3, 6):
        await broker.publish(f"{base}.p", i)
    refused = {type(o["start"]) for o in UNSUPPORTED.get(backend, [])}
    refused_first = any(o["start"] == "first" for o in UNSUPPORTED.get(backend, []))

    async def first_of(start: Any, durable: str) -> list[int] | None:
        got: list[int] = []
        unsupported = (start == "first" and refused_first) or (
            start not in ("first", "new") and type(start) in refused
        )
        if unsupported:
            with pytest.raises(NotSupported):
                await broker.subscribe(f"{base}.>", got.append, durable=durable, start=start)
            return None
        await broker.subscribe(
            f"{base}.>", lambda m: got.append(m.decode()), durable=durable, start=start
        )
        await broker.publish(f"{base}.p", 6)
        await eventually(lambda: 6 in got)
        return got

    assert await first_of("new", f"{name}n") == [6]
    got_first = await first_of("first", f"{name}f")
    assert got_first is None or got_first[:7] == [0, 1, 2, 3, 4, 5, 6]
    got_time = await first_of(middle, f"{name}t")
    assert got_time is None or got_time[0] == 3
    [info] = [s for s in await broker.streams() if s.name == stream]
    fifth = info.first_sequence + 4 if info.first_sequence is not None else 5
    got_seq = await first_of(fifth, f"{name}s")
    assert got_seq is None or got_seq[0] == 4
    await broker.delete_stream(stream)


async def test_drain_on_stop_loses_nothing(broker: microstd.broker.Broker, url: str) -> None:
    base, name = names()
    handled: list[int] = []

    async def slow(m: Message) -> None:
        await asyncio.sleep(0.03)  # slower than publishing (even with confirms): work piles up
        handled.append(m.decode())  # type: ignore[arg-type]

    sub = await broker.subscribe(f"{base}.e", slow, durable=name, max_inflight=50)
    for i in range(300):
        await broker.publish(f"{base}.e", i)
    await eventually(lambda: len(handled) >= 20)
    await sub.unsubscribe(timeout=0.05)  # not enough for what it holds: the rest goes back
    assert len(handled) < 300
    async with microstd.broker.open(url) as again:
        await again.subscribe(f"{base}.e", lambda m: handled.append(m.decode()), durable=name)
        await eventually(lambda: set(handled) == set(range(300)))
        await quiet(again, base)


async def test_service_stop_drains_a_durable_subscriber(url: str) -> None:
    base, name = names()
    handled: list[int] = []
    svc = microstd.Service("durable-drain", registry="memory://", broker=url, grace=0.1)

    @svc.subscriber(f"{base}.svc", durable=name, max_inflight=50)
    async def slow(m: Message) -> None:
        await asyncio.sleep(0.002)
        handled.append(m.decode())  # type: ignore[arg-type]

    async with microstd.broker.open(url) as pub:
        await svc.start()
        for i in range(300):
            await pub.publish(f"{base}.svc", i)
        await eventually(lambda: len(handled) >= 20)
        await svc.stop()
        await pub.subscribe(f"{base}.svc", slow, durable=name)
        await eventually(lambda: set(handled) == set(range(300)))


async def test_bad_names_limits_and_options_raise(broker: microstd.broker.Broker) -> None:
    base, name = names()

    def h(m: Message) -> None:
        pass

    for bad_name in ["", "has space", "dot.ted", "x" * 65, 7]:
        with pytest.raises(ValueError, match="durable name"):
            await broker.subscribe(f"{base}.x", h, durable=bad_name)  # type: ignore[arg-type]
    with pytest.raises(InvalidTopic):
        await broker.subscribe(f"{base}.x", h, durable=name, dead_letter=f"{base}.*")
    with pytest.raises(ValueError, match="own pattern"):
        await broker.subscribe(f"{base}.*", h, durable=name, dead_letter=f"{base}.dead")
    bad_options: list[dict[str, Any]] = [
        {"max_deliver": 0},
        {"max_deliver": 1.5},
        {"ack": "sometimes"},
        {"ack_wait": 0},
        {"ack_wait": float("inf")},
        {"backoff": [-1]},
        {"backoff": "1s"},
        {"backoff": [0.1] * 101},
        {"start": "later"},
        {"start": 0},
        {"max_inflight": 0},
    ]
    for options in bad_options:
        with pytest.raises(ValueError):
            await broker.subscribe(f"{base}.x", h, durable=name, **options)
    with pytest.raises(ValueError, match="durable"):
        await broker.subscribe(f"{base}.x", h, ack="manual")
    with pytest.raises(TypeError):
        await broker.subscribe(f"{base}.x", h, durable=name, acks="manual")
    with pytest.raises(ValueError, match="stream name"):
        await broker.add_stream("bad name", f"{base}.>")
    with pytest.raises(InvalidTopic):
        await broker.add_stream(f"s{name}", f"{base}..>")
    for limits in [{"max_count": 0}, {"max_bytes": -1}, {"max_age": 0}, {"max_age": "1h"}]:
        with pytest.raises(ValueError):
            await broker.add_stream(f"s{name}", f"{base}.>", **limits)
    with pytest.raises(ValueError, match="overlap"):
        await broker.add_stream(f"s{name}", [f"{base}.>", f"{base}.a"])
    await broker.add_stream(f"s{name}", f"{base}.a.>")
    with pytest.raises(ValueError, match="overlap"):
        await broker.add_stream(f"t{name}", f"{base}.*.b")
    # A durable keeps its filter: another pattern under the same name is refused.
    await broker.subscribe(f"{base}.a.x", h, durable=name)
    with pytest.raises(ValueError, match="filters"):
        await broker.subscribe(f"{base}.a.y", h, durable=name)
    await broker.delete_stream(f"s{name}")


async def test_settling_a_core_message_is_not_supported(broker: microstd.broker.Broker) -> None:
    base, _ = names()
    got: list[Message] = []
    await broker.subscribe(f"{base}.c", got.append)
    await broker.publish(f"{base}.c", b"x")
    await eventually(lambda: bool(got))
    message = got[0]
    assert message.id is None
    assert message.delivery_count == 1
    for settle in (message.ack, message.nack, message.term, message.in_progress):
        with pytest.raises(NotSupported):
            settle()


async def test_unsupported_options_raise_at_subscribe_time(
    broker: microstd.broker.Broker, backend: str
) -> None:
    base, name = names()
    for options in UNSUPPORTED.get(backend, []):
        with pytest.raises(NotSupported):
            await broker.subscribe(f"{base}.u", lambda m: None, durable=name, **options)


async def test_streams_report_counts(broker: microstd.broker.Broker, backend: str) -> None:
    base, name = names()
    stream = f"s{name}"
    await broker.add_stream(stream, f"{base}.>")
    release = asyncio.Event()
    held: list[Message] = []

    async def hold(m: Message) -> None:
        held.append(m)
        await release.wait()

    sub = await broker.subscribe(f"{base}.>", hold, durable=name, max_inflight=1)
    for i in range(4):
        await broker.publish(f"{base}.x", i)
    await eventually(lambda: bool(held))

    uncounted = UNCOUNTED.get(backend, set())

    def durable_info(infos: list[microstd.broker.StreamInfo]) -> microstd.broker.DurableInfo:
        [info] = [s for s in infos if s.name == stream]
        assert info.messages == (None if "messages" in uncounted else 4)
        [found] = [d for d in info.durables if d.name == name]
        return found

    async def counts() -> tuple[int | None, int | None]:
        d = durable_info(await broker.streams())
        return d.pending, d.unacked

    expected = (3, None if "unacked" in uncounted else 1)
    deadline = time.monotonic() + 10
    while await counts() != expected:
        assert time.monotonic() < deadline, await counts()
        await asyncio.sleep(0.05)
    d = durable_info(await broker.streams())
    assert d.pattern == f"{base}.>"
    assert d.consumers == (None if "consumers" in uncounted else 1)
    release.set()
    await sub.unsubscribe()
    await broker.delete_stream(stream)


def test_sync_surface(url: str) -> None:
    base, name = names()
    got: list[int] = []
    with microstd.broker.open_sync(url) as broker:
        sub = broker.subscribe(f"{base}.y", lambda m: got.append(m.decode()), durable=name)
        sub.unsubscribe()
        for i in range(5):
            broker.publish(f"{base}.y", i)
        broker.subscribe(f"{base}.y", lambda m: got.append(m.decode()), durable=name)
        deadline = time.monotonic() + 20
        while len(got) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert got == list(range(5))
        assert [s.name for s in broker.streams() if any(d.name == name for d in s.durables)]


# --- across processes ---------------------------------------------------------------

# Only backends whose streams outlive a process take part (memory:// is per process).
if PROCESS_BACKENDS:

    @pytest.fixture(params=PROCESS_BACKENDS)
    def process_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return DURABLE_BACKENDS[request.param](request, tmp_path)

    def _child(url: str, topic: str, name: str, out: Path, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "microstd", "run", "proc_subscriber:make"],
            cwd=HERE.parent / "service",
            env={
                **os.environ,
                "SVC_BROKER": url,
                "SVC_TOPIC": topic,
                "SVC_OUT": str(out),
                "SVC_DURABLE": name,
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _wait_ready(proc: subprocess.Popen[bytes], pub: Any, topic: str, out: Path) -> None:
        deadline = time.monotonic() + 60
        while not Path(f"{out}.ready").exists():
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "child exited")
            assert time.monotonic() < deadline, "the child never subscribed"
            pub.publish(f"{topic}-ready", b"")
            time.sleep(0.05)

    def _reap(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()

    def test_sigkilled_member_s_message_is_redelivered_to_another_process(
        process_url: str, tmp_path: Path
    ) -> None:
        base, name = names()
        out = tmp_path / "child.txt"
        # The child hangs in its handler (SVC_DELAY), holding the message unacked.
        proc = _child(process_url, f"{base}.k", name, out, SVC_DELAY="3600", SVC_ACK_WAIT="1.0")
        got: list[tuple[str | None, int]] = []
        try:
            with microstd.broker.open_sync(process_url) as broker:
                _wait_ready(proc, broker, f"{base}.k", out)
                broker.publish(f"{base}.k", 1)
                started = Path(f"{out}.started")
                deadline = time.monotonic() + 30
                while not started.exists():
                    assert time.monotonic() < deadline, "the child never got the message"
                    time.sleep(0.01)
                broker.subscribe(
                    f"{base}.k",
                    lambda m: got.append((m.id, m.delivery_count)),
                    durable=name,
                    ack_wait=1.0,
                )
                proc.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                while not got:
                    assert time.monotonic() - killed_at < 15, "not redelivered after the kill"
                    time.sleep(0.01)
                assert got[0][1] == 2
                assert got[0][0] == started.read_text().strip()
        finally:
            _reap(proc)

    def test_sigterm_loses_nothing(process_url: str, tmp_path: Path) -> None:
        """300 messages, a subscriber stopped by SIGTERM with a short grace: every message
        is handled, by it before it exits or by the next subscriber of the durable."""
        base, name = names()
        out = tmp_path / "child.txt"
        # Handlers slower than publishing (even with publisher confirms), so work piles up.
        proc = _child(process_url, f"{base}.t", name, out, SVC_GRACE="0.2", SVC_DELAY="0.03")
        handled: set[int] = set()
        try:
            with microstd.broker.open_sync(process_url) as broker:
                _wait_ready(proc, broker, f"{base}.t", out)
                for i in range(300):
                    broker.publish(f"{base}.t", i)
                deadline = time.monotonic() + 60
                while not out.exists() or len(out.read_text().split()) < 20:
                    assert time.monotonic() < deadline, "the child handled nothing"
                    time.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0
                handled.update(int(x) for x in out.read_text().split())
                assert len(handled) < 300, "the child finished everything: nothing was tested"
                broker.subscribe(f"{base}.t", lambda m: handled.add(m.decode()), durable=name)
                deadline = time.monotonic() + 60
                while handled != set(range(300)):
                    assert time.monotonic() < deadline, f"{300 - len(handled)} messages lost"
                    time.sleep(0.01)
        finally:
            _reap(proc)
