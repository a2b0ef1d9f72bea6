"""Fencing tokens (and the Redis store's revisions) across a server restart, each
test on a private server.

- Redis without persistence forgets every key on a restart, the token counters
  too: tokens still keep increasing (seeded from the server's clock), so a
  fenced resource refuses the holder from before the restart. Mutual exclusion
  itself does not survive such a restart: the lock is free at once while the old
  holder learns of its loss only at its next refresh (docs/guarantees.md).
- etcd keeps its data directory across a restart: create revisions, hence
  tokens, keep increasing, and leases survive.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from _servers import ServerProcess
from faults._locks import FencedLog, eventually, never_hangs, url_of
from microstd import store, sync
from microstd.errors import Conflict, LockLost


async def _lost(call: Awaitable[object]) -> None:
    with pytest.raises(LockLost):
        await call


def _name() -> str:
    return f"restart-{uuid.uuid4().hex[:8]}"


async def test_tokens_keep_increasing_across_a_restart_without_persistence(
    server_factory: Callable[[str], ServerProcess],
) -> None:
    server = server_factory("redis")  # no persistence: a restart forgets every key
    url, name = url_of("redis", server), _name()
    log = FencedLog()
    async with sync.open(url) as locks, sync.open(url) as others:
        for _ in range(3):
            lease = await locks.acquire(name, ttl=30.0)
            assert log.write(lease.token, "before")
            await lease.release()
        stale = await locks.acquire(name, ttl=30.0)
        assert log.write(stale.token, "stale")
        leader = await locks.elect(name, candidate="a", ttl=30.0)
        server.kill()
        server.start()
        # The restart lost the lock: the next holder gets it at once...
        fresh = await eventually(lambda: others.acquire(name, ttl=30.0, wait=0))
        # ... with a token above every token given out before the restart.
        assert fresh.token > stale.token
        assert log.write(fresh.token, "fresh")
        # A fenced resource refuses the stale holder, which learns it lost the lease.
        assert not log.write(stale.token, "stale")
        # (Its first call may find its connection closed by the restart: ConnectionFailed.)
        await eventually(lambda: _lost(stale.refresh()))
        successor = await eventually(lambda: others.elect(name, candidate="b", ttl=30.0, wait=0))
        assert successor.token > leader.token
        await never_hangs(leader.lost.wait(), 60.0)
        await successor.resign()
        await fresh.release()
        await leader.resign()


async def test_etcd_tokens_keep_increasing_across_a_restart(
    server_factory: Callable[[str], ServerProcess],
) -> None:
    server = server_factory("etcd")
    url, name = url_of("etcd", server), _name()
    log = FencedLog()
    async with sync.open(url) as locks, sync.open(url) as others:
        held = await locks.acquire(name, ttl=5.0)
        assert log.write(held.token, "held")
        server.kill()
        server.start()
        # etcd kept the key and its lease: after the restart the holder still
        # holds (or, had its lease run out meanwhile, learns it), and the next
        # holder's token is above it either way.
        try:
            await eventually(held.refresh)
            await held.release()
        except LockLost:
            pass
        nxt = await never_hangs(others.acquire(name, ttl=5.0, wait=30.0), 60.0)
        assert nxt.token > held.token
        assert log.write(nxt.token, "next")
        await nxt.release()


async def test_store_revisions_keep_increasing_across_a_restart_without_persistence(
    server_factory: Callable[[str], ServerProcess],
) -> None:
    """The Redis store's revisions have the same problem and the same cure: without
    it a stale `if_revision` matched a record rewritten after the restart."""
    server = server_factory("redis")  # no persistence
    url = f"redis://127.0.0.1:{server.port}/0?timeout=1"
    async with store.open(url) as records:
        for i in range(3):
            seen = await records.write("k", i)
        server.kill()
        server.start()
        for i in range(3):
            rev = await eventually(lambda i=i: records.write("k", 10 + i))
            assert rev > seen
        # A writer that read the record before the restart cannot overwrite it.
        with pytest.raises(Conflict):
            await records.write("k", "stale", if_revision=seen)
