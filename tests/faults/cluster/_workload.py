"""The workloads and checks the cluster tests share, whatever the engine.

got = Received()                                 # a subscriber's messages and on_error
await publish_until_delivered(publisher, topic, got, "after")
got.assert_loss_then_return_reported()

turns = LockTurns(name, wait=2.0, steps=2, step=0.02)
tasks = [asyncio.create_task(turns.take_turns(locks, who)) ...]
turns.assert_tokens_rose()                       # in grant order; the fenced log took each

write = numbered_writes(store, prefix)           # op(i) for _failover.through_failover
after, lost = await check_writes_through_failover(store, prefix, outcome, kill_at=20)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import microstd.broker
from faults._locks import FencedLog, hold_in_steps
from faults._support import FAST, RECOVER, Watcher, eventually, never_hangs
from faults.cluster._failover import Outcome
from microstd.broker import Broker
from microstd.errors import (
    ConnectionFailed,
    LockLost,
    LockTimeout,
    NotFound,
)
from microstd.registry import Event, Node, Registry, ServiceRecord
from microstd.store import Store

__all__ = [
    "WRITES",
    "LockTurns",
    "check_writes_through_failover",
    "collect_nodes",
    "follow_reloads",
    "greeter",
    "node_ids",
    "numbered_writes",
    "publish_until_delivered",
    "subscription_through",
    "unique",
    "wait_for",
    "watch_reporting",
    "write_until_applied",
]

#: Operations of a store or broker workload run through a failover.
WRITES = 60


def unique(what: str) -> str:
    """`what` with a random suffix: tests share a cluster, so names must not collide."""
    return f"{what}{uuid.uuid4().hex[:8]}"


async def wait_for(check: Callable[[], bool], what: str, seconds: float = 2 * RECOVER) -> None:
    """Poll `check()` until it holds; fail the test, naming `what`, after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds}s"
        await asyncio.sleep(0.05)


# -- store -----------------------------------------------------------------------


def numbered_writes(store: Store, prefix: str) -> Callable[[int], Awaitable[int]]:
    """The store workload's operation: `op(i)` writes ``{"n": i}`` to key `prefix` + i
    and returns its revision."""

    async def write(i: int) -> int:
        return int(await store.write(f"{prefix}{i}", {"n": i}))

    return write


async def check_writes_through_failover(
    store: Store, prefix: str, outcome: Outcome, *, kill_at: int, total: int = WRITES
) -> tuple[list[str], int]:
    """The checks of `numbered_writes` run through a failover (replication asynchronous):
    revisions rose with every acknowledgement, and every write acknowledged after the
    kill without a failed attempt reads back with its revision. Returns those writes'
    keys and how many writes acknowledged before the kill were missing afterwards."""
    revisions = [outcome.acked[i] for i in range(total)]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == total
    after = [f"{prefix}{i}" for i in range(kill_at, total) if i not in outcome.ambiguous]
    records = await eventually(lambda: store.read_many(after))
    assert {k: r.revision for k, r in records.items()} == {
        f"{prefix}{i}": outcome.acked[i] for i in range(kill_at, total) if f"{prefix}{i}" in after
    }
    # Acknowledged before the kill: kept only if the replica had received them.
    early = [f"{prefix}{i}" for i in range(kill_at)]
    kept = await eventually(lambda: store.read_many(early))
    return after, kill_at - len(kept)


# -- broker ----------------------------------------------------------------------


async def publish_until_delivered(publisher: Broker, topic: str, got: Watcher, tag: str) -> None:
    """Publish `tag`1, `tag`2, ... until one of them reaches `got` (at most once
    delivery: any one may be lost); fail the test after RECOVER seconds."""
    deadline = time.monotonic() + RECOVER
    n = 0
    while not any(isinstance(b, str) and b.startswith(tag) for b in got.bodies):
        assert time.monotonic() < deadline, f"no {tag!r} message delivered within {RECOVER}s"
        n += 1
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(publisher.publish(topic, f"{tag}{n}"))
        await asyncio.sleep(0.05)


async def subscription_through(
    url: str, topic: str, kill: Callable[[], object]
) -> tuple[Watcher, float]:
    """A core subscription to `topic` through `url` (FAST options) delivering, then
    `kill()`, then publishing until it delivers again: its watcher, and the seconds
    from the kill to that delivery."""
    got = Watcher()
    subscriber: Broker = microstd.broker.open(url, on_error=got.on_error, **FAST)
    async with subscriber, microstd.broker.open(url, **FAST) as publisher:
        await subscriber.subscribe(topic, got.handler)
        await publish_until_delivered(publisher, topic, got, "before")
        kill()
        start = time.monotonic()
        await publish_until_delivered(publisher, topic, got, "after")
        return got, time.monotonic() - start


# -- locks -----------------------------------------------------------------------


class LockTurns:
    """Lock sets taking turns holding lock `name` (`take_turns`, one task each), each
    holder writing its fencing token to a shared `FencedLog` as its holding starts
    and ends, working in `steps` steps of `step` seconds while its lease is safe.

    Records every grant `(time, token, who)`, every holding `(start, end, token,
    who)` for `check_spans`, whether each holder's first write was accepted, and
    when an acquire failed."""

    def __init__(self, name: str, *, ttl: float, wait: float, steps: int, step: float) -> None:
        self.name, self.ttl, self.wait, self.steps, self.step = name, ttl, wait, steps, step
        self.log = FencedLog()
        self.grants: list[tuple[float, int, str]] = []
        self.spans: list[tuple[float, float, int, str]] = []
        self.firsts: list[bool] = []
        self.failed: list[float] = []
        self.stop = asyncio.Event()

    async def take_turns(self, locks: Any, who: str) -> None:
        while not self.stop.is_set():
            try:
                lease = await locks.acquire(self.name, ttl=self.ttl, wait=self.wait)
            except (LockTimeout, ConnectionFailed):
                self.failed.append(time.monotonic())
                await asyncio.sleep(0.02)
                continue
            start = time.monotonic()
            self.grants.append((start, lease.token, who))
            self.firsts.append(self.log.write(lease.token, who))
            end = await hold_in_steps(lease, self.steps, self.step)
            self.spans.append((start, end, lease.token, who))
            self.log.write(lease.token, who)
            with contextlib.suppress(LockLost, ConnectionFailed):
                await lease.release()

    def assert_tokens_rose(self, *, distinct: bool = False) -> None:
        """Tokens rose in grant order (each distinct, if asked), so the fenced log
        accepted every new holder's first write."""
        tokens = [token for _, token, _ in sorted(self.grants)]
        assert tokens == sorted(tokens), tokens
        if distinct:
            assert len(set(tokens)) == len(tokens), tokens
        assert all(self.firsts), "a new holder's first write was refused: a token went back"


# -- registry --------------------------------------------------------------------


def greeter(node: str) -> ServiceRecord:
    """The service the registry tests register: "greeter" with the one node `node`."""
    return ServiceRecord("greeter", "1", [Node(node, "127.0.0.1:8000")], ["Greeter.Hello"])


async def node_ids(registry: Registry, service: str = "greeter") -> set[str]:
    """The ids of the nodes `registry` finds for `service` (none: the empty set)."""
    try:
        return {n.id for s in await registry.lookup(service) for n in s.nodes}
    except NotFound:
        return set()


async def collect_nodes(events: AsyncIterator[Event], seen: set[str]) -> None:
    """Add to `seen` every node a registry watch reports created or updated."""
    async for event in events:
        if event.kind in ("create", "update"):
            seen.update(n.id for n in event.service.nodes)


async def watch_reporting(
    registry: Registry,
    seen: set[str],
    tag: str,
    *,
    ttl: float,
    watching: asyncio.Task[None] | None = None,
    retry: bool = False,
) -> None:
    """Return once the watch filling `seen` (through `collect_nodes`, in task
    `watching`) reports a node registered now: its starting point is what was
    registered before it began reading, which it does not report. `retry`:
    registrations failing with `ConnectionFailed` are retried (a cluster that may
    still be recovering)."""
    deadline = time.monotonic() + RECOVER
    for i in itertools.count(1):
        if watching is not None and watching.done():
            watching.result()  # its error
            raise AssertionError("the watch ended")
        record = greeter(f"{tag}-{i}")
        if retry:
            await eventually(lambda record=record: registry.register(record, ttl=ttl))
        else:
            await registry.register(record, ttl=ttl)
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            if f"{tag}-{i}" in seen:
                return
            await asyncio.sleep(0.02)
        assert time.monotonic() < deadline, "the watch never reported a node"


# -- config ----------------------------------------------------------------------


async def follow_reloads(cfg: Any) -> None:
    """Keep a hot-reloading config's watch running (run it as a task)."""
    async for _ in cfg.watch(debounce=0.02):
        pass


async def write_until_applied(cfg: Any, want: str, put: Callable[[str], Awaitable[None]]) -> None:
    """`put(want)` (again, every so often: a write may be lost) until the config
    shows ``db.host == want``; fail the test after RECOVER seconds."""
    deadline = time.monotonic() + RECOVER
    while cfg.value["db"]["host"] != want:
        assert time.monotonic() < deadline, f"config never showed {want}"
        with contextlib.suppress(ConnectionFailed):
            await never_hangs(put(want))
        await asyncio.sleep(0.1)
