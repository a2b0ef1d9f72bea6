"""Services in separate processes, through a Redis registry: calls, SIGTERM, crashes."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest
from _procs import pids, spawn, stop, wait_registered

from microstd.client import Client


@pytest.fixture
def name() -> str:
    return f"svc{uuid.uuid4().hex[:8]}"


async def test_two_processes_call_each_other(redis_url: str, name: str) -> None:
    a = spawn(f"{name}-a", redis_url)
    b = spawn(f"{name}-b", redis_url)
    try:
        await wait_registered(redis_url, f"{name}-a", a)
        await wait_registered(redis_url, f"{name}-b", b)
        async with Client(redis_url) as client:
            reply = await client.call(f"{name}-a", "Proc.Ask", {"peer": f"{name}-b"})
            assert (reply["pid"], reply["peer"]["pid"]) == (a.pid, b.pid)
            reply = await client.call(f"{name}-b", "Proc.Ask", {"peer": f"{name}-a"})
            assert (reply["pid"], reply["peer"]["pid"]) == (b.pid, a.pid)
    finally:
        stop(a, b)


async def test_sigterm_under_load_loses_no_request(redis_url: str, name: str) -> None:
    first, second = spawn(name, redis_url), spawn(name, redis_url)
    try:
        await wait_registered(redis_url, name, first, second)
        async with Client(redis_url, cache_ttl=0.2, backoff=0.02, retries=5) as client:

            async def one(n: int) -> dict[str, int]:
                await asyncio.sleep(n * 0.01)  # spread arrivals across the shutdown
                reply: dict[str, int] = await client.call(
                    name, "Proc.Slow", {"seconds": 0.3, "n": n}, timeout=10
                )
                return reply

            calls = [asyncio.ensure_future(one(n)) for n in range(60)]
            await asyncio.sleep(0.2)  # some calls are in flight on both nodes
            first.send_signal(signal.SIGTERM)
            replies = await asyncio.gather(*calls)
        assert sorted(r["n"] for r in replies) == list(range(60))
        served = {r["pid"] for r in replies}
        assert first.pid in served  # the stopping node finished what it had accepted
        assert second.pid in served
        assert first.wait(10) == 0
        # It deregistered on the way out, long before its TTL would have run out.
        assert await pids(redis_url, name) == {second.pid}
    finally:
        stop(first, second)


async def test_killed_node_drops_out_and_calls_fail_over(redis_url: str, name: str) -> None:
    victim, survivor = spawn(name, redis_url, ttl=1.0), spawn(name, redis_url, ttl=1.0)
    try:
        await wait_registered(redis_url, name, victim, survivor)
        async with Client(redis_url, backoff=0.01) as client:
            seen = {(await client.call(name, "Proc.Whoami"))["pid"] for _ in range(4)}
            assert seen == {victim.pid, survivor.pid}
            victim.kill()
            victim.wait(5)
            # Before the registry notices, read-only calls already fail over. They say
            # idempotent=True: a call sent on a pooled connection the dead process has not
            # yet been seen to close cannot know whether it reached a handler.
            replies = [await client.call(name, "Proc.Whoami", idempotent=True) for _ in range(6)]
            assert {r["pid"] for r in replies} == {survivor.pid}
            # Once the client has seen the connection close, new connections are refused,
            # which is safe to retry for any call.
            await asyncio.sleep(0.1)
            replies = [await client.call(name, "Proc.Whoami") for _ in range(6)]
            assert {r["pid"] for r in replies} == {survivor.pid}
        for _ in range(100):  # the victim's TTL (1 s) runs out
            if await pids(redis_url, name) == {survivor.pid}:
                break
            await asyncio.sleep(0.05)
        assert await pids(redis_url, name) == {survivor.pid}
    finally:
        stop(victim, survivor)
