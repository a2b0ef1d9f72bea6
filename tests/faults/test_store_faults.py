"""The store under server faults, on Redis (AOF on) and NATS JetStream (file store).

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import microstd.store
from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import FAST, FAST_NATS, HANG, eventually, fails_fast, never_hangs
from microstd.errors import ConnectionFailed
from microstd.store import Event, Store

pytestmark = pytest.mark.services

KINDS = ["redis", "nats", "postgres"]
#: Watches that go on after a lost connection (JetStream replays what they missed);
#: the others end with ConnectionFailed (Redis pub/sub cannot replay).
WATCH_RESUMES = {"nats", "postgres"}


def _url(kind: str, port: int) -> tuple[str, dict[str, Any]]:
    if kind == "redis":
        return f"redis://127.0.0.1:{port}/0", dict(FAST)
    if kind == "postgres":
        return f"postgresql://postgres@127.0.0.1:{port}/postgres", {**FAST, "table": "faults"}
    return f"nats://127.0.0.1:{port}?bucket=faults", dict(FAST_NATS)


def _open(kind: str, port: int) -> Store:
    url, options = _url(kind, port)
    return microstd.store.open(url, **options)


async def _every_call_fails_fast(store: Store) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: store.read("k"),
        lambda: store.write("k", "during"),
        lambda: store.list(),
        lambda: store.exists("k"),
        lambda: store.delete("other"),
        lambda: store.read_many(["k"]),
    ]
    for call in calls:
        await fails_fast(call())


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_fail_fast_while_the_server_is_frozen(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server frozen (SIGSTOP): every call raises ConnectionFailed within its
    timeout, none hangs; once it thaws, the same store works without reopening."""
    server = servers(kind)
    async with _open(kind, server.port) as store:
        await store.write("k", "before")
        server.pause()
        try:
            await _every_call_fails_fast(store)
        finally:
            server.resume()
        rev = await eventually(lambda: store.write("k", "after"))
        record = await store.read("k")
        assert (record.value, record.revision) == ("after", rev)


@pytest.mark.parametrize("kind", KINDS)
async def test_acknowledged_writes_survive_a_kill(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed (SIGKILL) and restarted on the same port, persistence on:
    every write acknowledged before the kill reads back with its revision; calls
    fail fast while it is down; the same store works again without reopening, and
    revisions keep growing."""
    server = servers(kind)
    async with _open(kind, server.port) as store:
        written = {f"k{i}": await store.write(f"k{i}", {"n": i}) for i in range(20)}
        server.kill()
        await _every_call_fails_fast(store)
        server.start()
        records = await eventually(lambda: store.read_many(list(written)))
        assert {k: (r.value, r.revision) for k, r in records.items()} == {
            k: ({"n": int(k[1:])}, rev) for k, rev in written.items()
        }
        rev = await store.write("new", 1)
        assert isinstance(rev, int)
        assert rev > max(written.values())


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cut_connection_is_replaced(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Connection reset (through the proxy): a call fails with ConnectionFailed
    at most until the client reconnects, never hangs, and the same store works
    again without reopening."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as store:
        await store.write("k", 1)
        for value in (2, 3):
            proxy.drop()
            await eventually(lambda v=value: store.write("k", v))  # type: ignore[misc]
            assert (await store.read("k")).value == value


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_fail_fast_through_a_stalled_connection(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Network stalled (the proxy accepts but forwards nothing): every call raises
    ConnectionFailed within its timeout; once traffic flows again the same store
    works without reopening."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as store:
        await store.write("k", "before")
        proxy.stall()
        try:
            await _every_call_fails_fast(store)
        finally:
            proxy.resume()
        await eventually(lambda: store.write("k", "after"))
        assert (await store.read("k")).value == "after"


BATCH = [f"batch/{i}" for i in range(6)]
OLD = dict.fromkeys(BATCH, "old")
NEW = {key: f"new{i}" for i, key in enumerate(BATCH)}


async def _all_or_none(store: Store) -> None:
    """Every key of BATCH has its NEW value, or every one its OLD value."""
    records = await eventually(lambda: store.read_many(BATCH))
    values = {key: record.value for key, record in records.items()}
    assert values in (OLD, NEW), values


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_a_batch_whose_reply_is_lost_is_all_or_nothing(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Connection cut mid-batch (the reply to the request carrying its fourth value
    is lost): `write_many` raises ConnectionFailed, and every key of the batch has
    its new value or none does. Redis: the batch is one script on the server.
    NATS: the keys written (the fourth one too: it landed) are put back once the
    client has reconnected."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as store:
        await store.write_many(OLD)
        proxy.lose_reply_to(NEW[BATCH[3]].encode(), anywhere=True)
        await fails_fast(store.write_many(NEW))
        assert proxy.lost_replies == 1
        await _all_or_none(store)


async def test_a_batch_sent_to_a_frozen_server_is_all_or_nothing(
    servers: Callable[[str], ServerProcess],
) -> None:
    """Redis frozen while `write_many` runs: it raises ConnectionFailed within its
    timeout; once the server thaws it may still apply what it was sent, but every
    key of the batch has its new value or none does."""
    server = servers("redis")
    async with _open("redis", server.port) as store:
        await store.write_many(OLD)
        server.pause()
        try:
            await fails_fast(store.write_many(NEW))
        finally:
            server.resume()
        await _all_or_none(store)


async def _next(events: AsyncIterator[Event]) -> Event:
    return await never_hangs(events.__anext__())


async def _watch_outcome(kind: str, events: AsyncIterator[Event], writer: Store, key: str) -> None:
    """After an outage: a resuming watch delivers `key`'s put (written by `writer`
    after the outage, or during it); an ending watch raises ConnectionFailed."""
    if kind in WATCH_RESUMES:
        while True:
            event = await never_hangs(events.__anext__(), HANG * 2)
            if event.key == key:
                assert event.kind == "put"
                return
    else:
        with pytest.raises(ConnectionFailed):
            await _drain(events)


async def _drain(events: AsyncIterator[Event]) -> None:
    """Consume events until the watch ends (each one within the hang bound)."""
    while True:
        await never_hangs(events.__anext__(), HANG * 2)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_watch_resumes_or_ends_after_a_kill(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed and restarted: a watch never stops silently. NATS: it
    resumes and delivers writes made after the restart. Redis: it ends with
    ConnectionFailed (pub/sub cannot replay what it missed)."""
    server = servers(kind)
    async with _open(kind, server.port) as store, _open(kind, server.port) as writer:
        events = store.watch()
        await store.write("before", 1)
        assert (await _next(events)).key == "before"
        server.kill()
        server.start()
        await eventually(lambda: writer.write("after", 2))
        await _watch_outcome(kind, events, writer, "after")
        await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_watch_resumes_or_ends_after_a_stall(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Network stalled under a watch (longer than the liveness check): the watch
    never stops silently. NATS: it resumes and delivers the writes made while it
    was cut off. Redis: its PING goes unanswered and it ends with ConnectionFailed."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as store, _open(kind, server.port) as writer:
        events = store.watch()
        await store.write("before", 1)
        assert (await _next(events)).key == "before"
        proxy.stall()
        await writer.write("during", 2)
        # Long enough for the client's liveness check (ping_interval=1) to fire.
        await asyncio.sleep(4 * FAST["ping_interval"])
        proxy.resume()
        await _watch_outcome(kind, events, writer, "during")
        await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.faults_long
@pytest.mark.parametrize("kind", KINDS)
async def test_a_long_outage_is_survived(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server down for 70 s (longer than any reconnect budget the clients had):
    the store works again without reopening, and a NATS watch resumes."""
    server = servers(kind)
    async with _open(kind, server.port) as store, _open(kind, server.port) as writer:
        events = store.watch()
        await store.write("before", 1)
        assert (await _next(events)).key == "before"
        server.stop()
        for _ in range(14):
            await fails_fast(store.read("before"))
            await asyncio.sleep(5)
        server.start()
        await eventually(lambda: writer.write("after", 2), 60)
        assert (await eventually(lambda: store.read("after"))).value == 2
        await _watch_outcome(kind, events, writer, "after")
        await events.aclose()  # type: ignore[attr-defined]
