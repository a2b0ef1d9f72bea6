"""RPC speed: microstd's server and client against a bare aiohttp handler.

Both servers decode the msgpack request with the same codec and encode the
same reply, on loopback. Cases:

- bare: aiohttp handler, driven by a plain aiohttp client session;
- server: the microstd server, driven by the same plain aiohttp session
  (the server's overhead alone);
- client: the microstd `Client` over HTTP to the microstd server (full stack:
  registry resolution, headers, deadlines, error handling);
- in-process: the microstd `Client` in-process path (no HTTP).

Each case runs as single round trips (latency) and as batches of 64
concurrent calls (throughput). `python benches/bench_rpc.py` prints each
kind against the bare handler, with its direction ("1.12x slower": 1.12x
the time per call), as `microstd bench rpc` does. The rig (servers, clients, loop) is
`microstd.bench.rpc.Rig`, shared with `microstd bench rpc`.

NATS (`NatsRig`, its own nats-server): a microstd `Service(transport="nats://...")`
called through `Client(transport=...)` against a bare nats-py queue-group
responder called with `nc.request`, both decoding and encoding the same msgpack
bodies, with 1, 16 and 64 calls in flight; "x bare" is time per call against
the bare one (below 1.30 is the aim). `--only nats` (repeatable, with `http`,
`stream`, `nats-stream`) runs one part.

Server streaming over NATS (`NatsStreamRig`): items per second of one stream,
`Client(transport=...).stream` against a bare nats-py loop publishing the same
items to the reader's inbox.

Server streaming (`StreamRig`): items per second of one stream of
`STREAM_ITEMS` small msgpack items, a microstd async-generator handler read
through `Client.stream` over HTTP (a WebSocket) against a bare aiohttp
WebSocket handler sending the same encoded items to a plain aiohttp client
that decodes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from microstd.bench.report import ratio_text
from microstd.bench.rpc import BATCH, BODY, KINDS, REPLY, Rig


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    made.start()
    yield made
    made.close()


#: Items per timed stream, and the item each carries.
STREAM_ITEMS = 5000
STREAM_ITEM = {"n": 1, "symbol": "ACME", "price": 101.25, "tags": ["a", "b"]}
STREAM_KINDS = ("bare-ws", "stream")


class StreamRig:
    """A bare aiohttp WebSocket server and a microstd streaming service, on one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self.calls: dict[str, Callable[[], Awaitable[int]]] = {}
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        import uuid

        import aiohttp
        from aiohttp import web

        import microstd
        from microstd import codec

        msgpack = codec.get("application/msgpack")

        async def bare(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            n = msgpack.loads(await ws.receive_bytes())
            assert isinstance(n, int)
            for i in range(n):
                await ws.send_bytes(msgpack.dumps(STREAM_ITEM | {"n": i}))
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/ws", bare)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._closers.append(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        bare_url = f"http://127.0.0.1:{runner.addresses[0][1]}/ws"

        registry = f"memory://bench-stream-{uuid.uuid4().hex[:8]}"
        svc = microstd.Service("bench-stream", registry=registry)

        @svc.handler("Prices.Watch")
        async def watch(n: int) -> Any:
            for i in range(n):
                yield STREAM_ITEM | {"n": i}

        await svc.start()
        self._closers.append(svc.stop)
        session = aiohttp.ClientSession()
        self._closers.append(session.close)
        client = microstd.Client(registry, local=False)
        self._closers.append(client.close)

        async def bare_stream() -> int:
            got = 0
            async with session.ws_connect(bare_url) as ws:
                await ws.send_bytes(msgpack.dumps(STREAM_ITEMS))
                async for msg in ws:
                    item = msgpack.loads(msg.data)
                    assert isinstance(item, dict)
                    got += 1
            return got

        async def stream() -> int:
            got = 0
            async for item in client.stream("bench-stream", "Prices.Watch", STREAM_ITEMS):
                assert isinstance(item, dict)
                got += 1
            return got

        self.calls = {"bare-ws": bare_stream, "stream": stream}

    def run(self, kind: str) -> int:
        return self.loop.run_until_complete(self.calls[kind]())

    def close(self) -> None:
        for closer in reversed(self._closers):
            self.loop.run_until_complete(closer())
        self.loop.close()


@pytest.fixture(scope="module")
def stream_rig() -> Iterator[StreamRig]:
    made = StreamRig()
    yield made
    made.close()


@pytest.mark.parametrize("kind", STREAM_KINDS)
def test_stream_items(benchmark: Any, stream_rig: StreamRig, kind: str) -> None:
    benchmark.group = f"server streaming, {STREAM_ITEMS} items"
    assert benchmark(stream_rig.run, kind) == STREAM_ITEMS


def stream_main(rounds: int = 8) -> None:
    """Print server streaming items/s, microstd against the bare WebSocket loop."""
    rig = StreamRig()
    inf = float("inf")
    best = {kind: [inf, inf] for kind in STREAM_KINDS}  # wall, CPU seconds per stream
    try:
        for kind in STREAM_KINDS:
            rig.run(kind)  # warm up
        for _ in range(rounds):
            for kind in STREAM_KINDS:
                wall, cpu = time.perf_counter(), time.process_time()
                assert rig.run(kind) == STREAM_ITEMS
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[kind] = [min(best[kind][0], wall), min(best[kind][1], cpu)]
    finally:
        rig.close()
    # Items per second, and each against the bare loop (1.00 and above: as fast or
    # faster); by CPU time too, steadier on a shared machine (both ends run here).
    base = best["bare-ws"]
    print(f"\n{'stream case':12} {'items/s':>10} {'x bare':>7} {'cpu x bare':>10}")
    for kind in STREAM_KINDS:
        wall, cpu = best[kind]
        rate = STREAM_ITEMS / wall
        print(f"{kind:12} {rate:10.0f} {base[0] / wall:7.2f} {base[1] / cpu:10.2f}")


NATS_KINDS = ("bare-nats", "nats")


class NatsRig:
    """A nats-server of its own, a bare nats-py request/reply responder and a
    microstd service with `transport="nats://..."`, on one loop.

    Both responders decode the msgpack request with the same codec and encode
    the same reply; the bare client is `nc.request` plus the same decoding.
    """

    def __init__(self) -> None:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from _servers import nats_server

        self.proc = nats_server()
        self.proc.start()
        self.url = f"nats://127.0.0.1:{self.proc.port}"
        self.loop = asyncio.new_event_loop()
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self.calls: dict[str, Callable[[], Awaitable[object]]] = {}
        try:
            self.loop.run_until_complete(self._start())
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        import uuid

        import nats

        import microstd
        from microstd import codec

        msgpack = codec.get("application/msgpack")
        payload = msgpack.dumps(BODY)

        responder = await nats.connect(self.url)
        self._closers.append(responder.close)

        async def bare(msg: Any) -> None:
            req = msgpack.loads(msg.data)
            assert isinstance(req, dict)
            await msg.respond(msgpack.dumps({"msg": f"hello {req['name']}"}))

        await responder.subscribe("bench.bare", queue="bench", cb=bare)
        requester = await nats.connect(self.url)
        self._closers.append(requester.close)

        name = f"bench-nats-{uuid.uuid4().hex[:6]}"
        svc = microstd.Service(name, registry="memory://", transport=self.url)

        # Plain `dict` annotations: decoded as the bare responder decodes, with no
        # typed validation on top (which `dict[str, Any]` would add, on both sides).
        @svc.handler("Greeter.Hello")
        async def hello(req: dict) -> dict:  # type: ignore[type-arg]
            return {"msg": f"hello {req['name']}"}

        await svc.start()
        self._closers.append(svc.stop)
        client = microstd.Client(transport=self.url)
        self._closers.append(client.close)

        async def bare_call() -> object:
            msg = await requester.request("bench.bare", payload, timeout=10)
            return msgpack.loads(msg.data)

        self.calls = {
            "bare-nats": bare_call,
            "nats": lambda: client.call(name, "Greeter.Hello", BODY),
        }

    def run(self, aw: Awaitable[object]) -> object:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        for closer in reversed(self._closers):
            self.loop.run_until_complete(closer())
        self._closers.clear()
        self.loop.close()
        self.proc.close()


@pytest.fixture(scope="module")
def nats_rig() -> Iterator[NatsRig]:
    made = NatsRig()
    yield made
    made.close()


@pytest.mark.parametrize("kind", NATS_KINDS)
def test_nats_round_trip(benchmark: Any, nats_rig: NatsRig, kind: str) -> None:
    benchmark.group = "rpc over NATS, round trip"
    call = nats_rig.calls[kind]
    assert benchmark(lambda: nats_rig.run(call())) == REPLY


#: Calls in flight at once in the NATS cases: one at a time (latency), then loaded.
NATS_IN_FLIGHT = (1, 16, BATCH)


def nats_main(rounds: int = 10) -> None:
    """Print NATS request/reply latency and loaded time per call, microstd against
    bare nats-py, at each of `NATS_IN_FLIGHT` calls in flight."""
    rig = NatsRig()
    inf = float("inf")
    best = {kind: dict.fromkeys(NATS_IN_FLIGHT, (inf, inf)) for kind in NATS_KINDS}

    async def measure() -> None:
        for kind in NATS_KINDS:
            await _timed(rig.calls[kind], 4 * BATCH, BATCH)  # warm up
        for _ in range(rounds):
            for at_once in NATS_IN_FLIGHT:
                for kind in NATS_KINDS:
                    n = 300 if at_once == 1 else 6 * BATCH
                    wall, cpu = await _timed(rig.calls[kind], n, at_once)
                    old = best[kind][at_once]
                    best[kind][at_once] = (min(old[0], wall), min(old[1], cpu))

    try:
        rig.run(measure())
    finally:
        rig.close()
    base = best["bare-nats"]
    columns = ["latency us"]
    for at_once in NATS_IN_FLIGHT:
        columns += ["x bare" if at_once == 1 else f"{at_once} conc. x", "cpu x"]
    print(f"\n{'nats case':10} " + " ".join(f"{c:>10}" for c in columns))
    for kind in NATS_KINDS:
        ratios = [
            best[kind][at_once][i] / base[at_once][i] for at_once in NATS_IN_FLIGHT for i in (0, 1)
        ]
        latency = best[kind][1][0] * 1e6
        print(f"{kind:10} {latency:10.1f} " + " ".join(f"{r:10.2f}" for r in ratios))


NATS_STREAM_KINDS = ("bare-nats-stream", "nats-stream")


class NatsStreamRig(NatsRig):
    """Server streaming over NATS: a microstd async-generator handler read through
    `Client(transport=...).stream` against a bare nats-py loop publishing the same
    encoded items to the requester's inbox, read by a subscription callback and
    decoded (no flow control, no sequence check: what microstd adds is what it
    costs)."""

    async def _start(self) -> None:
        import uuid

        import nats

        import microstd
        from microstd import codec

        msgpack = codec.get("application/msgpack")
        streamer = await nats.connect(self.url)
        self._closers.append(streamer.close)

        async def bare(msg: Any) -> None:
            n = msgpack.loads(msg.data)
            assert isinstance(n, int)
            for i in range(n):
                await streamer.publish(msg.reply, msgpack.dumps(STREAM_ITEM | {"n": i}))
            await streamer.publish(msg.reply, b"")  # the end

        await streamer.subscribe("bench.stream", cb=bare)
        reader = await nats.connect(self.url)
        self._closers.append(reader.close)

        name = f"bench-nats-stream-{uuid.uuid4().hex[:6]}"
        svc = microstd.Service(name, registry="memory://", transport=self.url)

        @svc.handler("Prices.Watch")
        async def watch(n: int) -> Any:
            for i in range(n):
                yield STREAM_ITEM | {"n": i}

        await svc.start()
        self._closers.append(svc.stop)
        client = microstd.Client(transport=self.url)
        self._closers.append(client.close)
        request = msgpack.dumps(STREAM_ITEMS)

        async def bare_stream() -> int:
            # A callback subscription: nats-py's fastest way in (its `sub.messages`
            # iterator makes a task per message, a strawman of a baseline).
            got = 0
            done = asyncio.get_running_loop().create_future()

            async def on_item(msg: Any) -> None:
                nonlocal got
                if not msg.data:
                    done.set_result(None)
                    return
                item = msgpack.loads(msg.data)
                assert isinstance(item, dict)
                got += 1

            inbox = reader.new_inbox()
            sub = await reader.subscribe(inbox, cb=on_item)
            try:
                await reader.publish("bench.stream", request, reply=inbox)
                await done
            finally:
                await sub.unsubscribe()
            return got

        async def stream() -> int:
            got = 0
            async for item in client.stream(name, "Prices.Watch", STREAM_ITEMS):
                assert isinstance(item, dict)
                got += 1
            return got

        self.calls = {"bare-nats-stream": bare_stream, "nats-stream": stream}


@pytest.fixture(scope="module")
def nats_stream_rig() -> Iterator[NatsStreamRig]:
    made = NatsStreamRig()
    yield made
    made.close()


@pytest.mark.parametrize("kind", NATS_STREAM_KINDS)
def test_nats_stream_items(benchmark: Any, nats_stream_rig: NatsStreamRig, kind: str) -> None:
    benchmark.group = f"server streaming over NATS, {STREAM_ITEMS} items"
    call = nats_stream_rig.calls[kind]
    assert benchmark(lambda: nats_stream_rig.run(call())) == STREAM_ITEMS


def nats_stream_main(rounds: int = 8) -> None:
    """Print server streaming items/s over NATS, microstd against the bare nats-py loop."""
    rig = NatsStreamRig()
    inf = float("inf")
    best = {kind: [inf, inf] for kind in NATS_STREAM_KINDS}  # wall, CPU seconds per stream
    try:
        for kind in NATS_STREAM_KINDS:
            rig.run(rig.calls[kind]())  # warm up
        for _ in range(rounds):  # interleaved: both kinds see the same machine load
            for kind in NATS_STREAM_KINDS:
                wall, cpu = time.perf_counter(), time.process_time()
                assert rig.run(rig.calls[kind]()) == STREAM_ITEMS
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[kind] = [min(best[kind][0], wall), min(best[kind][1], cpu)]
    finally:
        rig.close()
    base = best["bare-nats-stream"]
    print(f"\n{'nats stream':16} {'items/s':>10} {'x bare':>7} {'cpu x bare':>10}")
    for kind in NATS_STREAM_KINDS:
        wall, cpu = best[kind]
        rate = STREAM_ITEMS / wall
        print(f"{kind:16} {rate:10.0f} {base[0] / wall:7.2f} {base[1] / cpu:10.2f}")


@pytest.mark.parametrize("kind", KINDS)
def test_latency(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = "rpc round trip"
    reply = benchmark(rig.once, kind)
    assert reply == REPLY


@pytest.mark.parametrize("kind", KINDS)
def test_throughput(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = f"rpc {BATCH} concurrent calls"
    replies = benchmark(rig.batch, kind)
    assert replies == [REPLY] * BATCH


async def _timed(
    call: Callable[[], Awaitable[object]], calls: int, at_once: int
) -> tuple[float, float]:
    """Wall and CPU seconds per call over `calls` calls, `at_once` of them in flight."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls // at_once):
        if at_once == 1:
            await call()
        else:
            await asyncio.gather(*(call() for _ in range(at_once)))
    n = calls // at_once * at_once
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def main(rounds: int = 12) -> None:
    """Print latency, requests/s and the ratios to the bare handler.

    The cases are interleaved over `rounds` rounds, inside one event loop run,
    and the best round of each kept, so a busy machine skews them alike. CPU
    time is printed too: client and servers share this one thread, so CPU time
    per call is the work done, and other processes on the machine barely move it.
    """
    rig = Rig()
    rig.start()
    inf = float("inf")
    best = {k: {"lat": (inf, inf), "thr": (inf, inf)} for k in KINDS}

    async def measure() -> None:
        calls = {k: rig.call(k) for k in KINDS}
        for k in KINDS:  # warm up connections and caches
            await _timed(calls[k], 4 * BATCH, BATCH)
        for _ in range(rounds):
            for k in KINDS:
                for name, n, at_once in (("lat", 300, 1), ("thr", 6 * BATCH, BATCH)):
                    wall, cpu = await _timed(calls[k], n, at_once)
                    old = best[k][name]
                    best[k][name] = (min(old[0], wall), min(old[1], cpu))

    try:
        rig.run(measure())
    finally:
        rig.close()
    # The same direction as `microstd bench`: each kind against bare, "1.12x slower"
    # meaning 1.12x the time per call (wall clock, then CPU time).
    rows = [
        [
            "case",
            "latency us",
            "vs bare",
            "cpu vs bare",
            "req/s (64 conc.)",
            "vs bare",
            "cpu vs bare",
        ]
    ]
    base = best["bare"]
    for k in KINDS:
        lat, thr = best[k]["lat"], best[k]["thr"]
        rows.append(
            [
                k,
                f"{lat[0] * 1e6:.1f}",
                *(ratio_text(base["lat"][i] / lat[i]) for i in (0, 1)),
                f"{1 / thr[0]:.0f}",
                *(ratio_text(base["thr"][i] / thr[i]) for i in (0, 1)),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def _observe(otel: bool, metrics: bool) -> None:
    """Turn tracing (an SDK provider exporting in batches to memory) and metrics on."""
    from microstd import observe

    if otel:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        observe.configure(tracer_provider=provider)
    if metrics:
        observe.configure(metrics=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--otel", action="store_true", help="trace with the OpenTelemetry SDK")
    parser.add_argument("--metrics", action="store_true", help="record metrics")
    parts = {
        "http": main,
        "stream": stream_main,
        "nats": nats_main,
        "nats-stream": nats_stream_main,
    }
    parser.add_argument(
        "--only", choices=sorted(parts), action="append", help="run only these parts (repeatable)"
    )
    options = parser.parse_args()
    _observe(options.otel, options.metrics)
    for part, run in parts.items():
        if not options.only or part in options.only:
            run()
