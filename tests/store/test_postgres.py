"""postgresql:// specifics: watch resync after a lost connection, large values, key limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

import microstd.store
from microstd._engines import postgres
from microstd.errors import InvalidKey
from microstd.store import Event, Store

pytestmark = pytest.mark.services


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[Store]:
    async with microstd.store.open(postgres_url, table=f"t{uuid.uuid4().hex[:10]}") as s:
        yield s


async def _next(events: object, timeout: float = 10.0) -> Event:
    result: Event = await asyncio.wait_for(events.__anext__(), timeout)  # type: ignore[attr-defined]
    return result


async def _kill_listeners(postgres_url: str) -> int:
    """Terminate every backend that is LISTENing (the shared listening connections)."""
    endpoint, _ = postgres.PostgresEndpoint.from_url(postgres_url)
    conn = await postgres.endpoint_connect(endpoint)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
        )
        return len(rows)
    finally:
        await conn.close()


async def test_watch_catches_up_after_its_connection_is_killed(
    store: Store, postgres_url: str
) -> None:
    events = store.watch("w/")
    try:
        await store.write("w/before", 0)
        assert (await _next(events)).key == "w/before"
        assert await _kill_listeners(postgres_url) >= 1
        # Changes made while the watch is away: none may be missed.
        r1 = await store.write("w/a", 1)
        await store.write("w/b", 2, ttl=60)
        await store.delete("w/a")
        await store.write("x/other", 3)
        got = [await _next(events) for _ in range(2)]
        kinds = [(e.kind, e.key) for e in got]
        # While away, w/a's put was overwritten by its delete: the catch-up reads the
        # table, so it reports w/a's latest state (deleted) and w/b's put, in revision order.
        assert kinds in (
            [("put", "w/b"), ("delete", "w/a")],
            [("put", "w/a"), ("put", "w/b")],  # the put was seen live before the loss
        )
        if kinds[0] == ("put", "w/a"):
            assert got[0].record is not None
            assert got[0].record.revision == r1
            assert [(e.kind, e.key) for e in [await _next(events)]] == [("delete", "w/a")]
        await store.write("w/after", 4)
        assert (await _next(events)).key == "w/after"
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_values_too_large_for_a_notification_are_read_back(store: Store) -> None:
    events = store.watch("big/")
    try:
        big = b"x" * 100_000
        rev = await store.write("big/1", big, metadata={"m": "1"})
        ev = await _next(events)
        assert (ev.kind, ev.key) == ("put", "big/1")
        assert ev.record is not None
        assert (ev.record.value, ev.record.revision, ev.record.metadata) == (big, rev, {"m": "1"})
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_write_many_is_one_transaction_and_watched_in_order(store: Store) -> None:
    events = store.watch("m/")
    try:
        revs = await store.write_many({f"m/{i}": i for i in range(5)})
        got = [await _next(events) for _ in range(5)]
        assert [(e.key, e.record.revision if e.record else None) for e in got] == [
            (f"m/{i}", revs[f"m/{i}"]) for i in range(5)
        ]
        assert sorted(revs.values()) == [revs[f"m/{i}"] for i in range(5)]
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_keys_are_bytes_nul_and_long_keys(store: Store) -> None:
    await store.write("a\x00b", 1)
    assert (await store.read("a\x00b")).value == 1
    assert await store.list("a\x00") == ["a\x00b"]
    await store.write("k" * 2048, 1)
    with pytest.raises(InvalidKey, match="2048"):
        await store.write("k" * 2049, 1)


async def test_expired_rows_are_invisible_before_the_sweep(postgres_url: str) -> None:
    table = f"t{uuid.uuid4().hex[:10]}"
    async with microstd.store.open(postgres_url, table=table, purge_interval=3600) as store:
        await store.write("brief", 1, ttl=0.2)
        deadline = time.monotonic() + 10
        while await store.exists("brief"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await store.list() == []
