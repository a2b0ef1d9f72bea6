"""`microstd bench broker`: the Rust routing core against its pure twin.

Groups:
- `publish, 100k subs`: one publish to a hot subject while 100,000
  subscriptions of mixed literals and wildcards exist, a few of which match;
  measured at the routing core (`RustBroker.publish` vs `PythonBroker.publish`,
  the code that differs) and through the whole sync `publish` (encoding and
  building the message included, which the Rust core does natively in `send`).
  Timed in batches of `BATCH` publishes per call, as are the next two.
- `publish, 100k subs, cache miss`: the same, cycling through more distinct
  subjects than the match cache holds, so every publish walks the trie.
- `fan-out 1,000 sync handlers`: one sync-surface publish delivered inline
  to 1,000 plain handlers.
- `10 async subscribers`: a batch of messages published on the async surface
  to 10 async handlers, timed until every handler has seen every message
  (messages per second, end to end).
- `nats-py publish` (only with `nats_url`): publish throughput through a NATS
  server, raw nats-py and `NatsBroker`, as a reference point.

What the profile shows (perf, CPython 3.11): the matched handlers are
Python functions, and calling one from Rust costs about what the twin's
whole loop step costs minus its bytecode, ~55 ns for these trivial
handlers. With 1,000 handlers the Rust fan-out is ~3% of the samples and
the rest is CPython running the calls, so ~1.7x is the ceiling there; the
hot subject's 4 calls are ~3/4 of a Rust publish, capping it near 2x. On a
cache miss the Rust side is the trie walk (hashing and probing token maps)
and the cache insert and eviction; with routing free the 2-3 handler calls
would still cap the ratio near 17x. Async delivery is bounded by creating
and stepping one coroutine per handler call (~120 ns) and by the shared
`async def publish` coroutine (~200 ns per publish).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

from microstd import _accel
from microstd.bench import durable
from microstd.bench.runner import Case
from microstd.broker import Message, open_sync
from microstd.broker import open as open_async
from microstd.broker.memory import new_core

__all__ = ["cases"]

AREA = "broker"
HOT = "orders.eu.shop42.created"


def _impls() -> list[str]:
    return ["rust", "python"] if _accel.AVAILABLE else ["python"]


def _patterns(n: int) -> list[str]:
    """`n` patterns, mostly literals, a tenth with wildcards; only a few match `HOT`."""
    rng = random.Random(42)
    regions = [f"r{i}" for i in range(50)]
    out: list[str] = []
    for i in range(n):
        kind = i % 10
        if kind == 0:
            out.append(f"orders.{rng.choice(regions)}.*.created")
        elif kind == 1:
            out.append(f"events.{rng.choice(regions)}.>")
        else:
            out.append(f"orders.{rng.choice(regions)}.shop{i}.{rng.choice(['created', 'paid'])}")
    # The few that match.
    out += ["orders.eu.*.created", "orders.>", "*.eu.shop42.created", HOT]
    return out


_PATTERNS_CACHE: list[str] = []


def _many_patterns(quick: bool) -> list[str]:
    if not _PATTERNS_CACHE:
        _PATTERNS_CACHE.extend(_patterns(100_000))
    return _PATTERNS_CACHE if not quick else _PATTERNS_CACHE[-10_004:]


#: Publishes per timed call in the single-publish cases: the harness's own cost
#: per call (a Python call and a loop step, ~0.1 us) would otherwise be a
#: large share of a Rust publish and understate the difference measured.
BATCH = 128


def _core_publish(impl: str, patterns: list[str]) -> Callable[[], object]:
    core = new_core(impl)
    hits = [0]

    def handler(m: object) -> None:
        hits[0] += 1

    for p in patterns:
        core.subscribe(p, None, handler, None)
    message = Message(HOT, b"x")
    publish = core.publish
    rounds = range(BATCH)

    def run() -> object:
        before = hits[0]
        for _ in rounds:
            publish(HOT, message)
        return hits[0] - before

    return run


def _cold_publish(impl: str, patterns: list[str]) -> Callable[[], object]:
    """Publishes cycling through 2 x CACHE_MAX distinct subjects: every one walks the trie."""
    core = new_core(impl)
    hits = [0]

    def handler(m: object) -> None:
        hits[0] += 1

    for p in patterns:
        core.subscribe(p, None, handler, None)
    subjects = [f"orders.eu.shop{i}.created" for i in range(16_384)]
    chunks = [subjects[i : i + BATCH] for i in range(0, len(subjects), BATCH)]
    message = Message(HOT, b"x")
    publish = core.publish
    state = [0]

    def run() -> object:
        i = state[0]
        state[0] = (i + 1) % len(chunks)
        before = hits[0]
        for subject in chunks[i]:
            publish(subject, message)
        return hits[0] - before

    return run


def _surface_publish(impl: str, patterns: list[str]) -> Callable[[], object]:
    broker = open_sync("memory://", impl=impl)
    count = [0]

    def handler(m: Message) -> None:
        count[0] += 1

    for p in patterns:
        broker.subscribe(p, handler)
    publish = broker.publish
    rounds = range(BATCH)

    def run() -> object:
        before = count[0]
        for _ in rounds:
            publish(HOT, b"payload")
        return count[0] - before

    return run


def _fan_out(impl: str, n: int) -> Callable[[], object]:
    broker = open_sync("memory://", impl=impl)
    seen = [0]

    def make() -> Callable[[Message], None]:
        def handler(m: Message) -> None:
            seen[0] += 1

        return handler

    for _ in range(n):
        broker.subscribe("fan.out", make())

    def run() -> object:
        before = seen[0]
        broker.publish("fan.out", b"payload")
        return seen[0] - before

    return run


class _AsyncFanIn:
    """Per call: publish `batch` messages to `subs` async subscribers, wait for all."""

    def __init__(self, impl: str, subs: int, batch: int) -> None:
        self.impl, self.subs, self.batch = impl, subs, batch
        self.loop: asyncio.AbstractEventLoop | None = None
        self.broker: Any = None
        self.seen = 0
        self.done: asyncio.Event | None = None
        self.target = 0

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        self.broker = open_async("memory://", impl=self.impl)
        self.done = asyncio.Event()

        async def handler(m: Message) -> None:
            self.seen += 1
            if self.seen >= self.target:
                assert self.done is not None
                self.done.set()

        for _ in range(self.subs):
            await self.broker.subscribe("load.test", handler)

    async def _round(self) -> int:
        assert self.done is not None
        self.done.clear()
        start = self.seen
        self.target = start + self.subs * self.batch
        publish = self.broker.publish
        for _ in range(self.batch):
            await publish("load.test", b"payload")
        await self.done.wait()
        return self.seen - start

    def __call__(self) -> object:
        if self.loop is None:
            self.setup()
        assert self.loop is not None
        return self.loop.run_until_complete(self._round())

    def teardown(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.broker.close())
            self.loop.close()
            self.loop = None


class _DurableRoundTrip:
    """Per call: publish `batch` messages to a stream, one durable subscriber handles
    and acks each (auto ack); done when all are acked. Messages per second."""

    def __init__(self, impl: str, batch: int) -> None:
        self.impl, self.batch = impl, batch
        self.loop: asyncio.AbstractEventLoop | None = None
        self.broker: Any = None
        self.seen = 0
        self.done: asyncio.Event | None = None
        self.target = 0

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        self.broker = open_async("memory://", impl=self.impl)
        self.done = asyncio.Event()
        await self.broker.add_stream("bench", "durable.>", max_count=100_000)

        def handler(m: Message) -> None:
            self.seen += 1
            if self.seen >= self.target:
                assert self.done is not None
                self.done.set()

        await self.broker.subscribe("durable.>", handler, durable="bench", max_inflight=256)

    async def _round(self) -> int:
        assert self.done is not None
        self.done.clear()
        start = self.seen
        self.target = start + self.batch
        publish = self.broker.publish
        for _ in range(self.batch):
            await publish("durable.orders", b"payload")
        await self.done.wait()
        # Every message handled was acked: nothing stays unacked.
        [stream] = await self.broker.streams()
        [durable] = stream.durables
        assert durable.unacked == 0, durable
        return self.seen - start

    def __call__(self) -> object:
        if self.loop is None:
            self.setup()
        assert self.loop is not None
        return self.loop.run_until_complete(self._round())

    def teardown(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.broker.close())
            self.loop.close()
            self.loop = None


class _NatsPublish:
    """Per call: publish `batch` messages through NATS and flush (server has them all)."""

    def __init__(self, url: str, batch: int, raw: bool) -> None:
        self.url, self.batch, self.raw = url, batch, raw
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._setup())

    async def _setup(self) -> None:
        if self.raw:
            import nats

            self.client = await nats.connect(self.url)
        else:
            self.client = open_async(self.url)
            await self.client.connect()

    async def _round(self) -> int:
        if self.raw:
            for _ in range(self.batch):
                await self.client.publish("bench.nats", b"payload")
            await self.client.flush()
        else:
            for _ in range(self.batch):
                await self.client.publish("bench.nats", b"payload")
            await self.client.flush()
        return self.batch

    def __call__(self) -> object:
        if self.loop is None:
            self.setup()
        assert self.loop is not None
        return self.loop.run_until_complete(self._round())

    def teardown(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.client.close())
            self.loop.close()
            self.loop = None


def _equals(expected: int) -> Callable[[object], bool]:
    return lambda result: result == expected


def cases(
    quick: bool,
    nats_url: str | None = None,
    *,
    redis_url: str | None = None,
    amqp_url: str | None = None,
) -> list[Case]:
    """Every broker benchmark case (`quick` shrinks the subscription count to 10,004).

    The durable cases on real engines run for the servers given, or named by
    MICROSTD_BENCH_NATS / MICROSTD_BENCH_REDIS / MICROSTD_BENCH_AMQP (URLs of
    servers the benchmark may create streams and queues on).
    """
    nats_url = nats_url or os.environ.get("MICROSTD_BENCH_NATS") or None
    redis_url = redis_url or os.environ.get("MICROSTD_BENCH_REDIS") or None
    amqp_url = amqp_url or os.environ.get("MICROSTD_BENCH_AMQP") or None
    out: list[Case] = []
    patterns = _many_patterns(quick)
    n_subs = f"{len(patterns) // 1000}k subscriptions"
    for impl in _impls():
        out.append(
            Case(
                AREA,
                f"routing core: publish to a hot subject, 4 of {n_subs} match",
                "hot subject, 4 match",
                impl,
                _core_publish(impl, patterns),
                baseline=impl == "python",
                ops_per_call=BATCH,
                check=_equals(4 * BATCH),
            )
        )
    for impl in _impls():
        out.append(
            Case(
                AREA,
                f"routing core: publish to distinct subjects (cache miss), 2-3 of {n_subs} match",
                "distinct subjects, 2-3 match",
                impl,
                _cold_publish(impl, patterns),
                baseline=impl == "python",
                ops_per_call=BATCH,
                check=lambda r: isinstance(r, int) and r >= 2 * BATCH,
            )
        )
    for impl in _impls():
        out.append(
            Case(
                AREA,
                f"sync publish to a hot subject, 4 of {n_subs} match",
                "hot subject, 4 match",
                impl,
                _surface_publish(impl, patterns),
                baseline=impl == "python",
                ops_per_call=BATCH,
                check=_equals(4 * BATCH),
            )
        )
    for impl in _impls():
        out.append(
            Case(
                AREA,
                "one sync publish fanned out to 1,000 handlers",
                "one publish",
                impl,
                _fan_out(impl, 1000),
                baseline=impl == "python",
                check=lambda r: r == 1000,
            )
        )
    batch = 50 if quick else 200
    for impl in _impls():
        runner = _AsyncFanIn(impl, 10, batch)
        out.append(
            Case(
                AREA,
                "10 async subscribers, messages end to end",
                "messages/s end to end",
                impl,
                runner,
                baseline=impl == "python",
                ops_per_call=batch,
                check=_equals(10 * batch),
                setup=runner.setup,
                teardown=runner.teardown,
            )
        )
    for impl in _impls():
        durable_runner = _DurableRoundTrip(impl, batch)
        out.append(
            Case(
                AREA,
                "durable publish + consume + ack",
                "memory stream, 1 subscriber, messages/s",
                impl,
                durable_runner,
                baseline=impl == "python",
                ops_per_call=batch,
                check=_equals(batch),
                setup=durable_runner.setup,
                teardown=durable_runner.teardown,
            )
        )
    if nats_url is not None:
        for raw in (True, False):
            nats_runner = _NatsPublish(nats_url, batch, raw)
            out.append(
                Case(
                    AREA,
                    "publish via NATS (reference)",
                    "nats-py raw" if raw else "NatsBroker",
                    "nats-py" if raw else "microstd",
                    nats_runner,
                    baseline=raw,
                    label="nats-py (raw client)" if raw else "microstd NatsBroker",
                    role="peer" if raw else "core",
                    ops_per_call=batch,
                    check=_equals(batch),
                    setup=nats_runner.setup,
                    teardown=nats_runner.teardown,
                )
            )
    out.extend(durable.cases(quick, nats_url=nats_url, redis_url=redis_url, amqp_url=amqp_url))
    return out
