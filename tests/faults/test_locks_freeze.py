"""Locks and leadership on a frozen server (SIGSTOP), Redis and etcd, each test
against a private server of its own.

Guarantees checked (docs/guarantees.md, "Locks and leadership"):
- a leader gives up (`lost`) at its lease's local expiry minus the margin, while
  the server is still frozen, so before any rival can be granted the lease;
- a holder's refresh is bounded by its lease's time left, whatever the request
  timeout;
- operations fail with `ConnectionFailed` within the request timeout, never hang;
- holders never overlap, across freezes, when each works only inside its lease's
  safe window (the shared log of holdings proves it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from _servers import ServerProcess
from faults._locks import (
    HANG,
    TTL,
    check_spans,
    eventually,
    fails_fast,
    hold_in_steps,
    never_hangs,
    until,
    url_of,
)
from microstd import sync
from microstd.errors import ConnectionFailed, LockLost, LockTimeout

KINDS = ["redis", "etcd"]


async def _lost(call: Awaitable[object]) -> None:
    with pytest.raises(LockLost):
        await call


def _name() -> str:
    return f"fault-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_leader_gives_up_while_the_server_is_frozen(
    kind: str, server_factory: Callable[[str], ServerProcess]
) -> None:
    server = server_factory(kind)
    url, name, ttl = url_of(kind, server), _name(), TTL[kind]
    # The leader's requests may take a minute: what must end its leadership in
    # time is its lease's local expiry, not a request timeout.
    patient = url.replace("timeout=1.0", "timeout=60")
    async with sync.open(patient) as locks, sync.open(url) as rivals:
        leadership = await locks.elect(name, candidate="a", ttl=ttl)
        server.pause()
        try:
            # No renewal can be confirmed: `lost` fires at the local expiry minus the
            # margin, while the server is still frozen, so before any rival is granted.
            await never_hangs(leadership.lost.wait())
            # Meanwhile every operation fails within its timeout.
            await fails_fast(rivals.leader(name))
            await fails_fast(rivals.acquire(_name(), ttl=ttl, wait=0))
            await fails_fast(rivals.elect(name, candidate="b", ttl=ttl, wait=None))
        finally:
            server.resume()
        rival = await eventually(lambda: rivals.elect(name, candidate="b", ttl=ttl, wait=10.0))
        assert rival.token > leadership.token
        assert await rivals.leader(name) == "b"
        await rival.resign()
        await leadership.resign()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_holders_refresh_on_a_frozen_server_ends_at_its_local_expiry(
    kind: str, server_factory: Callable[[str], ServerProcess]
) -> None:
    server = server_factory(kind)
    # A long request timeout: what bounds the refresh is the lease's own time left.
    url = url_of(kind, server).replace("timeout=1.0", "timeout=60")
    async with sync.open(url) as locks:
        lease = await locks.acquire(_name(), ttl=TTL[kind])
        server.pause()
        try:
            with pytest.raises(LockLost):
                await never_hangs(lease.refresh())
        finally:
            server.resume()


@pytest.mark.parametrize("kind", KINDS)
async def test_holders_never_overlap_across_freezes(
    kind: str, server_factory: Callable[[str], ServerProcess]
) -> None:
    server = server_factory(kind)
    url, name, ttl = url_of(kind, server), _name(), TTL[kind]
    spans: list[tuple[float, float, int, str]] = []
    stop = asyncio.Event()

    async def worker(who: str) -> None:
        async with sync.open(url) as locks:
            while not stop.is_set():
                try:
                    lease = await never_hangs(locks.acquire(name, ttl=ttl, wait=ttl))
                except (LockTimeout, ConnectionFailed):
                    continue
                start = time.monotonic()
                end = await hold_in_steps(lease, steps=4, step=ttl / 5)
                spans.append((start, end, lease.token, who))
                with contextlib.suppress(LockLost, ConnectionFailed):
                    await never_hangs(lease.release())

    workers = [asyncio.create_task(worker(f"w{i}")) for i in range(3)]
    try:
        for _ in range(2):
            seen = len(spans)
            await until(lambda seen=seen: len(spans) >= seen + 3, "no holdings between freezes")
            server.pause()
            await asyncio.sleep(2 * ttl)  # the fault: frozen for two leases
            server.resume()
        seen = len(spans)
        await until(lambda: len(spans) >= seen + 3, "no holdings after the last thaw")
    finally:
        server.resume()
        stop.set()
        await never_hangs(asyncio.gather(*workers), 60.0)
    check_spans(spans)


@pytest.mark.parametrize("kind", KINDS)
def test_a_blocking_leader_gives_up_while_the_server_is_frozen(
    kind: str, server_factory: Callable[[str], ServerProcess]
) -> None:
    """The blocking surface (the async backend on a private loop thread) keeps the rule."""
    server = server_factory(kind)
    url, name, ttl = url_of(kind, server), _name(), TTL[kind]
    patient = url.replace("timeout=1.0", "timeout=60")
    with sync.open_sync(patient) as locks, sync.open_sync(url) as rivals:
        leadership = locks.elect(name, candidate="a", ttl=ttl)
        server.pause()
        try:
            assert leadership.lost.wait(HANG), "the leader still led on a frozen server"
            # Fails within its timeout (a hang would run into the test's own timeout).
            with pytest.raises(ConnectionFailed):
                rivals.acquire(_name(), ttl=ttl, wait=0)
        finally:
            server.resume()
        leadership.resign()
