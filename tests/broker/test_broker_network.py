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
