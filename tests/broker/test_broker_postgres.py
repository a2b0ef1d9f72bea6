"""postgresql:// broker specifics: bodies past the NOTIFY limit, in order with small ones."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg
import pytest

import microstd.broker
from microstd.broker import Message
from microstd.broker._postgres_sql import subjects_regex
from microstd.broker._subjects import matches
from microstd.broker.postgres import _ddl as _core_ddl

pytestmark = pytest.mark.services


async def test_large_bodies_are_stored_and_delivered_in_order(postgres_url: str) -> None:
    got: list[tuple[str, int]] = []
    done = asyncio.Event()

    def handler(msg: Message) -> None:
        value = msg.decode()
        got.append((msg.topic, len(value)))  # type: ignore[arg-type]
        if len(got) == 3:
            done.set()

    async with microstd.broker.open(postgres_url, table=f"b{uuid.uuid4().hex[:10]}") as broker:
        await broker.subscribe("big.*", handler)
        await broker.publish("big.a", b"x" * 10)
        await broker.publish("big.b", b"y" * 200_000)  # far past NOTIFY's 8000 bytes
        await broker.publish("big.c", b"z" * 10)
        await asyncio.wait_for(done.wait(), 10)
    assert got == [("big.a", 10), ("big.b", 200_000), ("big.c", 10)]


def _url(postgres_url: str) -> str:
    """A broker table of the test's own."""
    return f"{postgres_url}?table=b{uuid.uuid4().hex[:10]}"


async def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_stream_subjects_match_as_the_broker_does(postgres_url: str) -> None:
    """The regular expressions the server matches topics with agree with `matches`,
    including tokens made of characters that mean something in a regex."""
    patterns = ["a.*", "a.>", "a+b.(x)", "*.c", "[x].y|z", "a\\b.$", "p.*.q"]
    topics = ["a.b", "a.b.c", "a+b.(x)", "aab.(x)", "ab.x", "b.c", "[x].y|z", "x.y", "a\\b.$"]
    topics += ["p.1.q", "p.q", "é.c"]
    conn = await asyncpg.connect(postgres_url)
    try:
        for pattern in patterns:
            regex = subjects_regex([pattern])
            for topic in topics:
                got = await conn.fetchval("SELECT $1 ~ $2", topic, regex)
                assert got == matches(pattern, topic), (pattern, topic, regex)
        both = subjects_regex(["a.*", "*.c"])
        assert await conn.fetchval("SELECT $1 ~ $2", "b.c", both)
        assert not await conn.fetchval("SELECT $1 ~ $2", "b.d", both)
    finally:
        await conn.close()


async def test_a_missed_notification_delays_a_delivery_by_at_most_ack_wait(
    postgres_url: str,
) -> None:
    """Durable members poll at least every ack_wait, so a NOTIFY lost (a reconnect of
    the listening connection) does not leave a message waiting."""
    got: list[object] = []
    async with microstd.broker.open(_url(postgres_url)) as broker:
        durables = broker._durables  # type: ignore[attr-defined]
        durables._on_notify = lambda payload: None  # every wake-up is lost
        sub = await broker.subscribe(
            "miss.*", lambda m: got.append(m.decode()), durable="m", ack_wait=0.5
        )
        await broker.publish("miss.a", 1)
        await _until(lambda: got == [1])
        member = sub.member  # type: ignore[attr-defined]
        # The member is idle (its ack sent, no fetch under way): only its poll can
        # find the next message.
        await _until(lambda: not member._io.locked() and not member._ops)
        await broker.publish("miss.a", 2)
        await _until(lambda: got == [1, 2])


async def test_large_durable_bodies(postgres_url: str) -> None:
    got: list[bytes] = []
    async with microstd.broker.open(_url(postgres_url)) as broker:
        sub = await broker.subscribe("big.*", lambda m: got.append(m.data), durable="big")
        await sub.unsubscribe()
        await broker.publish("big.a", b"x" * 300_000)  # past NOTIFY's 8000 bytes
        await broker.publish("big.b", b"y")
        await broker.subscribe("big.*", lambda m: got.append(m.data), durable="big")
        await _until(lambda: len(got) == 2)
    assert got == [b"x" * 300_000, b"y"]


async def test_members_of_many_brokers_take_each_message_once(postgres_url: str) -> None:
    """Three brokers (three pools) share one durable: each message is handled by
    exactly one of them (rows are taken with FOR UPDATE SKIP LOCKED), none twice."""
    url = _url(postgres_url)
    handled: list[tuple[int, int]] = []
    brokers = [microstd.broker.open(url) for _ in range(3)]
    try:
        for i, broker in enumerate(brokers):
            await broker.connect()

            async def handle(m: Message, i: int = i) -> None:
                handled.append((i, m.decode()))  # type: ignore[arg-type]
                await asyncio.sleep(0)

            await broker.subscribe("work.*", handle, durable="w", max_inflight=5)
        for n in range(300):
            await brokers[n % 3].publish("work.n", n)
        await _until(lambda: len(handled) >= 300)
        await _until_counts(brokers[0], "w")
        infos = {d.name: d for s in await brokers[0].streams() for d in s.durables}
        assert infos["w"].consumers == 3
    finally:
        for broker in brokers:
            await broker.close()
    assert sorted(n for _, n in handled) == list(range(300))
    assert {i for i, _ in handled} == {0, 1, 2}


async def _until_counts(broker: microstd.broker.Broker, name: str) -> None:
    """Every message of durable `name` is acked (acks are sent in batches)."""
    deadline = time.monotonic() + 20
    while True:
        infos = {d.name: d for s in await broker.streams() for d in s.durables}
        if (infos[name].pending, infos[name].unacked) == (0, 0):
            return
        assert time.monotonic() < deadline, infos[name]
        await asyncio.sleep(0.05)


async def test_durable_tables_join_an_existing_broker_table(postgres_url: str) -> None:
    """A table made by a broker without durable streams gets them on the next connect."""
    table = f"b{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres_url)
    try:
        # What the first postgresql:// broker created: its core tables, version 1.
        await conn.execute(_core_ddl(table))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS microstd_schema (name text PRIMARY KEY,"
            " version integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO microstd_schema (name, version) VALUES ($1, 1)", f"broker:{table}"
        )
    finally:
        await conn.close()
    got: list[object] = []
    async with microstd.broker.open(f"{postgres_url}?table={table}") as broker:
        await broker.subscribe("old.*", lambda m: got.append(m.decode()), durable="o")
        await broker.publish("old.a", 1)
        await _until(lambda: got == [1])
