"""RPC speed: microstd's server and client against a bare aiohttp handler.

Both servers decode the msgpack request with the same codec and encode the
same reply, on loopback. Cases:

- bare: aiohttp handler, driven by a plain aiohttp client session;
- server: the microstd server, driven by the same plain aiohttp session
  (the server's overhead alone);
- client: the microstd `Client` over HTTP to the microstd server (full stack:
  registry resolution, headers, deadlines, error handling);
- local: the microstd `Client` in-process path (no HTTP).

Each case runs as single round trips (latency) and as batches of 64
concurrent calls (throughput). `python benches/bench_rpc.py` prints the
ratios against the bare handler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import microstd
from microstd import codec

MSGPACK = codec.get("application/msgpack")
BODY = {"name": "ada", "tags": ["a", "b", "c"], "count": 3}
BATCH = 64
REGISTRY = "memory://bench-rpc"


class Rig:
    """Both servers and their clients on one private event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        async def bare(request: web.Request) -> web.Response:
            req = MSGPACK.loads(await request.read())
            assert isinstance(req, dict)
            reply = MSGPACK.dumps({"msg": f"hello {req['name']}"})
            return web.Response(body=reply, headers={"Content-Type": MSGPACK.content_type})

        app = web.Application()
        app.router.add_post("/{endpoint}", bare)
        self.bare_runner = web.AppRunner(app, access_log=None)
        await self.bare_runner.setup()
        await web.TCPSite(self.bare_runner, "127.0.0.1", 0).start()
        self.bare_url = f"http://127.0.0.1:{self.bare_runner.addresses[0][1]}/Greeter.Hello"

        self.svc = microstd.Service("bench-greeter", registry=REGISTRY)

        @self.svc.handler("Greeter.Hello")
        async def hello(req: dict[str, Any]) -> dict[str, str]:
            return {"msg": f"hello {req['name']}"}

        await self.svc.start()
        self.svc_url = f"http://{self.svc.server.address}/Greeter.Hello"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        self.client = microstd.Client(REGISTRY, local=False)
        self.local = microstd.Client(REGISTRY, local=True)
        self.payload = MSGPACK.dumps(BODY)
        self.headers = {"Content-Type": MSGPACK.content_type, "Accept": MSGPACK.content_type}

    async def _post(self, url: str) -> object:
        async with self.http.post(url, data=self.payload, headers=self.headers) as resp:
            assert resp.status == 200
            return MSGPACK.loads(await resp.read())

    def case(self, kind: str) -> Callable[[], Awaitable[object]]:
        if kind == "bare":
            return lambda: self._post(self.bare_url)
        if kind == "server":
            return lambda: self._post(self.svc_url)
        client = self.client if kind == "client" else self.local
        return lambda: client.call("bench-greeter", "Greeter.Hello", BODY)

    def once(self, kind: str) -> object:
        return self.loop.run_until_complete(self.case(kind)())

    def batch(self, kind: str) -> list[object]:
        call = self.case(kind)

        async def many() -> list[object]:
            return list(await asyncio.gather(*(call() for _ in range(BATCH))))

        return self.loop.run_until_complete(many())

    def close(self) -> None:
        async def stop() -> None:
            await self.http.close()
            await self.client.close()
            await self.local.close()
            await self.svc.stop()
            await self.bare_runner.cleanup()

        self.loop.run_until_complete(stop())
        self.loop.close()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


KINDS = ["bare", "server", "client", "local"]


@pytest.mark.parametrize("kind", KINDS)
def test_latency(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = "rpc round trip"
    reply = benchmark(rig.once, kind)
    assert reply == {"msg": "hello ada"}


@pytest.mark.parametrize("kind", KINDS)
def test_throughput(benchmark: Any, rig: Rig, kind: str) -> None:
    benchmark.group = f"rpc {BATCH} concurrent calls"
    replies = benchmark(rig.batch, kind)
    assert replies == [{"msg": "hello ada"}] * BATCH


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn()
        n += 1
    return (time.perf_counter() - began) / n


def main() -> None:
    """Print latency, requests/s and the ratio to the bare handler.

    The cases are interleaved over several rounds and the best round of each
    kept, so a busy machine skews them alike.
    """
    rig = Rig()
    lat = dict.fromkeys(KINDS, float("inf"))
    thr = dict.fromkeys(KINDS, float("inf"))
    try:
        for kind in KINDS:  # warm up connections and caches
            rig.batch(kind)
        for _ in range(5):
            for k in KINDS:
                lat[k] = min(lat[k], _per_call(lambda k=k: rig.once(k), 0.3))  # type: ignore[misc]
                thr[k] = min(thr[k], _per_call(lambda k=k: rig.batch(k), 0.3))  # type: ignore[misc]
    finally:
        rig.close()
    print(f"{'case':8} {'latency us':>11} {'x bare':>7} {'req/s (64 conc.)':>17} {'x bare':>7}")
    for k in KINDS:
        rps = BATCH / thr[k]
        print(
            f"{k:8} {lat[k] * 1e6:11.1f} {lat[k] / lat['bare']:7.2f} {rps:17.0f}"
            f" {thr[k] / thr['bare']:7.2f}"
        )


if __name__ == "__main__":
    main()
