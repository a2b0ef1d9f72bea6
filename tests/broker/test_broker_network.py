"""Network broker backends beyond the contract suite: failures, options, envelopes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import microstd.broker
from microstd.broker.nats import nats_queue
from microstd.broker.redis import glob_for
from microstd.errors import ConnectionFailed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _servers import free_port


@pytest.mark.parametrize("scheme", ["redis", "nats"])
async def test_unreachable_server_raises_connection_failed(scheme: str) -> None:
    # nats-py applies its reconnect budget to the first connection as well.
    broker = microstd.broker.open(
        f"{scheme}://127.0.0.1:{free_port()}?max_reconnect_attempts=1"
        if scheme == "nats"
        else f"{scheme}://127.0.0.1:{free_port()}"
    )
    with pytest.raises(ConnectionFailed):
        await asyncio.wait_for(broker.connect(), 30)
    await broker.close()


def test_redis_globs_are_supersets_with_literals_escaped() -> None:
    assert glob_for("a.*.c") == "a.*.c"
    assert glob_for("a.>") == "a.*"
    assert glob_for("we[ir]d?.x") == "we\\[ir\\]d\\?.x"


def test_nats_queue_names_are_qualified_by_pattern() -> None:
    assert nats_queue("a.*", "q") != nats_queue("a.>", "q")
    assert nats_queue("a.*", None) == ""


async def test_redis_skips_malformed_envelopes(redis_url: str) -> None:
    import redis.asyncio as aioredis

    got: list[object] = []
    async with microstd.broker.open(redis_url) as broker:
        await broker.subscribe("bad.*", lambda m: got.append(m.decode()))
        raw = aioredis.Redis.from_url(redis_url)
        try:
            await raw.publish("bad.x", b"not msgpack \xc1")
            await raw.publish("bad.x", b"\x93\x01\x02\x03")
        finally:
            await raw.aclose()
        await broker.publish("bad.y", "fine")
        for _ in range(1000):
            if got:
                break
            await asyncio.sleep(0.005)
    assert got == ["fine"]


async def test_url_options_reach_the_backend(nats_url: str) -> None:
    async with microstd.broker.open(nats_url + "?max_pending=3&overflow=drop") as broker:
        release = asyncio.Event()

        async def stuck(m: microstd.broker.Message) -> None:
            await release.wait()

        sub = await broker.subscribe("opt.x", stuck)
        for _ in range(10):
            await broker.publish("opt.x", b"")
        for _ in range(1000):
            if sub.dropped:
                break
            await asyncio.sleep(0.005)
        assert sub.dropped > 0
        release.set()


def test_preferred_member_is_stable_and_spreads_evenly() -> None:
    from microstd.broker.redis import preferred_member

    members = ["a.1", "b.1", "c.1"]
    picks = [preferred_member(f"{i:032x}", members) for i in range(3000)]
    assert picks == [preferred_member(f"{i:032x}", list(reversed(members))) for i in range(3000)]
    counts = [picks.count(m) for m in members]
    assert min(counts) > 3000 / 3 / 2, counts
    # A member leaving moves only its own messages.
    fewer = [preferred_member(f"{i:032x}", ["a.1", "b.1"]) for i in range(3000)]
    assert all(f == p for f, p in zip(fewer, picks, strict=True) if p != "c.1")


async def test_redis_group_member_that_vanished_loses_nothing(redis_url: str) -> None:
    """A registered member that never claims (its process died): the live one takes
    its messages after the fallback delay."""
    import time
    import uuid

    import redis.asyncio as aioredis

    base = f"ghost{uuid.uuid4().hex[:8]}"
    got: list[int] = []
    async with microstd.broker.open(redis_url, group_fallback=0.05) as broker:
        await broker.subscribe(f"{base}.*", lambda m: got.append(m.decode()), queue="w")
        raw = aioredis.Redis.from_url(redis_url)
        try:
            # A ghost member, alive for a minute as far as Redis knows.
            ghost_expiry = int(time.time() * 1000) + 60_000
            await raw.zadd(f"group:w@{base}.*", {"ghost.1": ghost_expiry})
            await raw.publish("microstd groups", f"group:w@{base}.*")
        finally:
            await raw.aclose()
        for _ in range(1000):
            if "ghost.1" in broker._groups[(f"{base}.*", "w")].view:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.005)
        for i in range(40):
            await broker.publish(f"{base}.job", i)
        for _ in range(2000):
            if len(got) == 40:
                break
            await asyncio.sleep(0.005)
    assert sorted(got) == list(range(40))


async def test_nats_publishes_waiting_on_an_unanswered_stream_list_share_one_read(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While JetStream does not answer the stream list, publishes waiting for it
    share one read and fail together with `ConnectionFailed` (unsent), instead
    of queueing one read each behind a lock (the last of N failed after N
    timeouts); the next publish reads the list again and goes through."""
    async with microstd.broker.open(nats_url) as broker:
        streams = broker._jetstreams  # type: ignore[attr-defined]
        reads = 0
        reading = asyncio.Event()
        release = asyncio.Event()

        async def unanswered() -> list[object]:
            nonlocal reads
            reads += 1
            reading.set()
            await release.wait()
            raise ConnectionFailed("list streams: no answer")

        monkeypatch.setattr(streams, "_stream_infos", unanswered)
        streams._forget()
        publishes = [asyncio.create_task(broker.publish("plain.topic", i)) for i in range(8)]
        await reading.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # every publish is waiting now
        release.set()
        results = await asyncio.gather(*publishes, return_exceptions=True)
        assert all(isinstance(r, ConnectionFailed) for r in results), results
        assert reads == 1
        monkeypatch.undo()
        await broker.publish("plain.topic", "after")  # read again: goes through
