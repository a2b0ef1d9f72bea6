"""`microstd bench rpc`: microstd's RPC against a bare aiohttp handler, over loopback.

The rig starts, on a private event loop, two servers on free 127.0.0.1 ports:
a bare aiohttp handler that decodes the msgpack request and encodes the reply
with the same codec, and a microstd `Service` whose handler does the same.
Cases, each against `bare` (the baseline):

- `bare`: the bare handler, called through a plain aiohttp session;
- `server`: the microstd server, called through the same plain session
  (the server's overhead alone);
- `client`: `Client` -> `Service` over HTTP, the full stack (registry
  resolution, node choice, deadline and request id headers, error handling);
- `in-process`: `Client` to a service served by this process (no HTTP).

Each runs as round trips one after another (latency) and as batches of 64
concurrent calls (throughput). The report gives each microstd path's calls
per second against `bare` with its direction: "1.25x slower" is 1/1.25 of
bare's calls per second, that is 1.25x the time per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from microstd import codec
from microstd.bench.runner import Case

__all__ = ["BATCH", "BODY", "KINDS", "LABELS", "REPLY", "Rig", "cases"]

AREA = "rpc"
KINDS = ("bare", "server", "client", "in-process")
#: How the report shows each kind: the bare handler is the peer, the rest are microstd.
LABELS = {
    "bare": "bare aiohttp handler",
    "server": "microstd server, plain aiohttp client",
    "client": "microstd Client -> Service over HTTP",
    "in-process": "microstd Client -> Service in this process",
}
BODY = {"name": "ada", "tags": ["a", "b", "c"], "count": 3}
REPLY = {"msg": "hello ada"}
#: Calls in flight at once in the throughput cases.
BATCH = 64
#: Round trips one after another per timed call in the latency cases (amortizes
#: the event loop's start and stop, which all cases pay alike).
SEQUENTIAL = 16


class Rig:
    """Both servers and their clients on one private event loop; `start()` is idempotent."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.msgpack = codec.get("application/msgpack")
        self.payload = self.msgpack.dumps(BODY)
        self.headers = {
            "Content-Type": self.msgpack.content_type,
            "Accept": self.msgpack.content_type,
        }
        self._calls: dict[str, Callable[[], Awaitable[object]]] = {}
        self._closers: list[Callable[[], Awaitable[object]]] = []

    def start(self) -> None:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            try:
                self.loop.run_until_complete(self._start())
            except BaseException:
                self.close()
                raise

    async def _start(self) -> None:
        import aiohttp
        from aiohttp import web

        import microstd

        msgpack = self.msgpack

        async def bare(request: web.Request) -> web.Response:
            req = msgpack.loads(await request.read())
            assert isinstance(req, dict)
            reply = msgpack.dumps({"msg": f"hello {req['name']}"})
            return web.Response(body=reply, headers={"Content-Type": msgpack.content_type})

        app = web.Application()
        app.router.add_post("/{endpoint}", bare)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._closers.append(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        bare_url = f"http://127.0.0.1:{runner.addresses[0][1]}/Greeter.Hello"

        # A registry of its own, so nothing else in the process can answer.
        registry = f"memory://bench-rpc-{uuid.uuid4().hex[:8]}"
        svc = microstd.Service("bench-greeter", registry=registry)

        @svc.handler("Greeter.Hello")
        async def hello(req: dict[str, Any]) -> dict[str, str]:
            return {"msg": f"hello {req['name']}"}

        await svc.start()
        self._closers.append(svc.stop)
        svc_url = f"http://{svc.server.address}/Greeter.Hello"

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        self._closers.append(session.close)
        client = microstd.Client(registry, local=False)
        self._closers.append(client.close)
        local = microstd.Client(registry, local=True)
        self._closers.append(local.close)

        async def post(url: str) -> object:
            async with session.post(url, data=self.payload, headers=self.headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
                return msgpack.loads(await resp.read())

        self._calls = {
            "bare": lambda: post(bare_url),
            "server": lambda: post(svc_url),
            "client": lambda: client.call("bench-greeter", "Greeter.Hello", BODY),
            "in-process": lambda: local.call("bench-greeter", "Greeter.Hello", BODY),
        }

    def call(self, kind: str) -> Callable[[], Awaitable[object]]:
        """An async function making one call of `kind`."""
        self.start()
        return self._calls[kind]

    def run(self, aw: Awaitable[object]) -> object:
        self.start()
        assert self.loop is not None
        return self.loop.run_until_complete(aw)

    def once(self, kind: str) -> object:
        """One round trip of `kind`; returns the reply."""
        return self.run(self.call(kind)())

    def sequential(self, kind: str, n: int = SEQUENTIAL) -> list[object]:
        """`n` round trips of `kind`, one after another."""
        call = self.call(kind)

        async def many() -> list[object]:
            return [await call() for _ in range(n)]

        result = self.run(many())
        assert isinstance(result, list)
        return result

    def batch(self, kind: str, n: int = BATCH) -> list[object]:
        """`n` calls of `kind` in flight at once."""
        call = self.call(kind)

        async def many() -> list[object]:
            return list(await asyncio.gather(*(call() for _ in range(n))))

        result = self.run(many())
        assert isinstance(result, list)
        return result

    def close(self) -> None:
        """Stop the servers and clients and close the loop (idempotent)."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            for closer in reversed(self._closers):
                loop.run_until_complete(closer())
        finally:
            self._closers.clear()
            self._calls.clear()
            loop.close()


def cases(quick: bool) -> list[Case]:
    """Latency and throughput of each kind; one rig, started by the first case."""
    rig = Rig()
    out: list[Case] = []
    for kind in KINDS:
        out.append(
            Case(
                AREA,
                "calls one at a time (latency)",
                "round trips, one at a time",
                kind,
                functools.partial(rig.sequential, kind),
                baseline=kind == "bare",
                label=LABELS[kind],
                role="peer" if kind == "bare" else "core",
                # No network: not like-for-like with the bare handler, so it is
                # shown but left out of the area's summary.
                in_summary=kind != "in-process",
                ops_per_call=SEQUENTIAL,
                check=lambda r: r == [REPLY] * SEQUENTIAL,
                setup=rig.start,
            )
        )
    for kind in KINDS:
        out.append(
            Case(
                AREA,
                f"{BATCH} calls in flight (throughput)",
                f"{BATCH} calls in flight",
                kind,
                functools.partial(rig.batch, kind),
                baseline=kind == "bare",
                label=LABELS[kind],
                role="peer" if kind == "bare" else "core",
                # No network: not like-for-like with the bare handler, so it is
                # shown but left out of the area's summary.
                in_summary=kind != "in-process",
                ops_per_call=BATCH,
                check=lambda r: r == [REPLY] * BATCH,
                setup=rig.start,
            )
        )
    # The rig lives across the cases; the last one stops it.
    out[-1] = dataclasses.replace(out[-1], teardown=rig.close)
    return out
