"""The RPC contract for streaming calls: server, client and bidirectional streams,
with deadlines, cancellation from either side, backpressure and errors mid-stream,
the same on every transport."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _rpc_rig import STREAM_TRANSPORTS, Rig, make_rig

import microstd
from microstd import errors
from microstd.errors import DeadlineExceeded, ServiceError
from microstd.rpc import Call, CallNext, Limits, current_context


@pytest.fixture(params=STREAM_TRANSPORTS)
def rig(request: pytest.FixtureRequest) -> Rig:
    return make_rig(request)


@dataclasses.dataclass
class Count:
    upto: int
    prefix: str = "n"


@dataclasses.dataclass
class Item:
    n: int
    label: str


class Probe:
    """What the server-side handlers saw, for the tests to wait on."""

    def __init__(self) -> None:
        self.produced = 0
        self.cleaned = asyncio.Event()
        self.started = asyncio.Event()


def stream_service(rig: Rig, probe: Probe, **kw: Any) -> microstd.Service:
    svc = rig.service("streams", **kw)

    @svc.handler("Streams.Count")
    async def count(req: Count) -> AsyncIterator[Item]:
        for n in range(req.upto):
            yield Item(n, f"{req.prefix}{n}")

    @svc.handler("Streams.Sum")
    async def total(reqs: AsyncIterator[Item]) -> dict[str, object]:
        labels, n = [], 0
        async for item in reqs:
            assert isinstance(item, Item)  # built from the annotation
            labels.append(item.label)
            n += item.n
        return {"sum": n, "labels": labels}

    @svc.handler("Streams.Echo")
    async def echo(reqs: AsyncIterator[dict[str, int]]) -> AsyncIterator[dict[str, int]]:
        async for req in reqs:
            yield {"double": req["x"] * 2}

    @svc.handler("Streams.Endless")
    async def endless(req: dict[str, int]) -> AsyncIterator[bytes]:
        probe.started.set()
        try:
            while True:
                probe.produced += 1
                yield b"x" * req.get("size", 8)
                if probe.produced >= req.get("limit", 1 << 30):
                    return
        finally:
            probe.cleaned.set()

    @svc.handler("Streams.FailAfter")
    async def fail_after(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["n"]):
            yield n
        raise errors.NotFound(f"no item {req['n']}")

    @svc.handler("Streams.Crash")
    async def crash(req: dict[str, int]) -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("the password is hunter2")

    @svc.handler("Streams.Context")
    async def context() -> AsyncIterator[dict[str, object]]:
        ctx = current_context()
        assert ctx is not None
        yield {"rid": ctx.request_id, "meta": dict(ctx.metadata), "left": ctx.time_left()}

    @svc.handler("Streams.StopEarly")
    async def stop_early(reqs: AsyncIterator[bytes]) -> bytes:
        async for req in reqs:
            return req  # takes one, ignores the rest: the client stops sending
        return b""

    @svc.handler("Unary.Ping")
    async def ping() -> str:
        return "pong"

    return svc


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _collect(stream: AsyncIterator[Any], into: list[Any], pause: float = 0.0) -> None:
    """Read a stream into `into` (pausing after each item), up to its end or error."""
    async for item in stream:
        into.append(item)
        if pause:
            await asyncio.sleep(pause)


# --- the three kinds ------------------------------------------------------------------


async def test_server_streaming(rig: Rig) -> None:
    async with stream_service(rig, Probe()), rig.client() as client:
        got = [
            item async for item in client.stream(rig.name("streams"), "Streams.Count", {"upto": 5})
        ]
        assert got == [{"n": n, "label": f"n{n}"} for n in range(5)]
        typed = client.stream(
            rig.name("streams"), "Streams.Count", Count(3, "t").__dict__, response_type=Item
        )
        assert [i async for i in typed] == [Item(0, "t0"), Item(1, "t1"), Item(2, "t2")]
        assert [
            i async for i in client.stream(rig.name("streams"), "Streams.Count", {"upto": 0})
        ] == []


async def test_client_streaming(rig: Rig) -> None:
    async with stream_service(rig, Probe()), rig.client() as client:
        items = [{"n": n, "label": f"i{n}"} for n in range(50)]
        reply = await client.call(rig.name("streams"), "Streams.Sum", _aiter(items))
        assert reply == {"sum": sum(range(50)), "labels": [f"i{n}" for n in range(50)]}
        assert await client.call(rig.name("streams"), "Streams.Sum", _aiter([])) == {
            "sum": 0,
            "labels": [],
        }


async def test_bidi_streaming_interleaves(rig: Rig) -> None:
    """Each reply arrives before the next request is sent: a true duplex stream."""
    sent: asyncio.Queue[int | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[dict[str, int]]:
        while (x := await sent.get()) is not None:
            yield {"x": x}

    async with stream_service(rig, Probe()), rig.client() as client:
        replies = client.stream(rig.name("streams"), "Streams.Echo", requests())
        got = []
        for x in range(5):
            await sent.put(x)
            got.append(await replies.__anext__())
        await sent.put(None)
        assert [r async for r in replies] == []
        assert got == [{"double": 2 * x} for x in range(5)]


# --- errors -----------------------------------------------------------------------------


async def test_an_error_mid_stream_is_a_service_error(rig: Rig) -> None:
    async with stream_service(rig, Probe()), rig.client() as client:
        got: list[object] = []
        with pytest.raises(ServiceError) as info:
            await _collect(client.stream(rig.name("streams"), "Streams.FailAfter", {"n": 3}), got)
        assert got == [0, 1, 2]
        assert (info.value.code, info.value.id, info.value.detail) == (
            404,
            rig.name("streams"),
            "no item 3",
        )
        with pytest.raises(ServiceError) as info:
            async for _ in client.stream(rig.name("streams"), "Streams.FailAfter", {"n": 0}):
                pass
        assert info.value.code == 404


async def test_a_crash_mid_stream_is_a_500_without_internals(rig: Rig) -> None:
    async with stream_service(rig, Probe()), rig.client() as client:
        stream = client.stream(rig.name("streams"), "Streams.Crash", {})
        assert await stream.__anext__() == 1
        with pytest.raises(ServiceError) as info:
            await stream.__anext__()
    assert info.value.code == 500
    assert "hunter2" not in info.value.detail


async def test_kinds_must_match(rig: Rig) -> None:
    async with stream_service(rig, Probe()), rig.client(retries=0) as client:
        with pytest.raises(ServiceError, match="unary endpoint") as info:
            async for _ in client.stream(rig.name("streams"), "Unary.Ping"):
                pass
        assert info.value.code == 400
        with pytest.raises(ServiceError, match="server-streaming endpoint") as info:
            await client.call(rig.name("streams"), "Streams.Count", {"upto": 1})
        assert info.value.code == 400
        with pytest.raises(ServiceError) as info:
            async for _ in client.stream(rig.name("streams"), "Streams.Nope"):
                pass
        assert info.value.code == 404


async def test_a_request_iterator_that_fails_ends_the_stream_with_its_error(rig: Rig) -> None:
    async def broken() -> AsyncIterator[dict[str, int]]:
        yield {"x": 1}
        raise ValueError("the source broke")

    async with stream_service(rig, Probe()), rig.client() as client:
        with pytest.raises(ValueError, match="the source broke"):
            async for _ in client.stream(rig.name("streams"), "Streams.Echo", broken()):
                pass


async def test_client_middleware_wraps_streams(rig: Rig) -> None:
    """Middleware sees `Client.stream` calls too: `call_next` gives the replies'
    iterator, which it may wrap; it runs at the first iteration."""
    seen: list[tuple[object, ...]] = []

    async def tenant(call: Call, call_next: CallNext) -> object:
        if call.endpoint == "Streams.Nope":
            raise errors.forbidden("no such thing for you")
        call.metadata["tenant"] = "acme"
        result = await call_next(call)
        if not call.stream:
            seen.append(("call", call.endpoint))
            return result

        async def counted() -> AsyncIterator[object]:
            n = 0
            async for item in result:  # type: ignore[attr-defined]
                n += 1
                yield item
            seen.append(("stream", call.endpoint, n))

        return counted()

    async with stream_service(rig, Probe()), rig.client(middleware=[tenant]) as client:
        [ctx] = [c async for c in client.stream(rig.name("streams"), "Streams.Context")]
        assert ctx["meta"] == {"tenant": "acme"}
        got = [i async for i in client.stream(rig.name("streams"), "Streams.Count", {"upto": 3})]
        assert len(got) == 3
        items = _aiter([{"n": 1, "label": "a"}])
        assert await client.call(rig.name("streams"), "Streams.Sum", items) == {
            "sum": 1,
            "labels": ["a"],
        }
        refused = client.stream(rig.name("streams"), "Streams.Nope")
        with pytest.raises(ServiceError, match="no such thing") as info:
            await refused.__anext__()
        assert info.value.code == 403
    assert seen == [
        ("stream", "Streams.Context", 1),
        ("stream", "Streams.Count", 3),
        ("call", "Streams.Sum"),
    ]


# --- deadlines and cancellation ---------------------------------------------------------


async def test_deadline_ends_the_stream_on_both_sides(rig: Rig) -> None:
    probe = Probe()
    async with stream_service(rig, probe), rig.client() as client:
        got: list[object] = []
        with pytest.raises(DeadlineExceeded):
            await _collect(
                client.stream(rig.name("streams"), "Streams.Endless", {}, timeout=0.3), got, 0.01
            )
        assert got
        await asyncio.wait_for(probe.cleaned.wait(), 30)  # the handler was stopped too


async def test_client_cancel_stops_the_handler(rig: Rig) -> None:
    probe = Probe()
    async with stream_service(rig, probe), rig.client() as client:
        async with client.stream(rig.name("streams"), "Streams.Endless", {}) as stream:
            async for _ in stream:
                break
        await asyncio.wait_for(probe.cleaned.wait(), 30)
        # The server is fine afterwards.
        assert [
            i async for i in client.stream(rig.name("streams"), "Streams.Count", {"upto": 2})
        ] != []


async def test_breaking_out_of_a_loop_closes_the_stream(rig: Rig) -> None:
    probe = Probe()
    async with stream_service(rig, probe), rig.client() as client:
        async for _ in client.stream(rig.name("streams"), "Streams.Endless", {}):
            break
        # The abandoned iterator is closed by the event loop; the handler stops.
        await asyncio.wait_for(probe.cleaned.wait(), 30)


async def test_server_stopping_early_stops_the_clients_requests(rig: Rig) -> None:
    pulled = 0

    async def many() -> AsyncIterator[bytes]:
        nonlocal pulled
        for n in range(10_000):  # 160 MiB if the client never stopped
            pulled += 1
            yield n.to_bytes(4, "big") * 4096

    async with stream_service(rig, Probe()), rig.client() as client:
        first = await client.call(rig.name("streams"), "Streams.StopEarly", many())
        assert first == bytes(4) * 4096
    assert pulled < 10_000 // 2  # the client stopped sending once the server answered


async def test_stream_deadline_defaults_to_the_servers_maximum(rig: Rig) -> None:
    limits = Limits(max_stream_timeout=42.0)
    async with stream_service(rig, Probe(), limits=limits), rig.client() as client:
        [ctx] = [
            c
            async for c in client.stream(
                rig.name("streams"), "Streams.Context", metadata={"k": "v"}
            )
        ]
        assert 0 < ctx["left"] <= 42.0
        assert ctx["meta"] == {"k": "v"}
        assert len(ctx["rid"]) == 32
        [ctx] = [c async for c in client.stream(rig.name("streams"), "Streams.Context", timeout=5)]
        assert 0 < ctx["left"] <= 5


async def test_stopping_the_service_ends_open_streams(rig: Rig) -> None:
    probe = Probe()
    svc = stream_service(rig, probe, grace=0.3)
    await svc.start()
    async with rig.client(retries=0) as client:
        stream = client.stream(rig.name("streams"), "Streams.Endless", {"size": 8})
        await stream.__anext__()
        await asyncio.wait_for(svc.stop(), 30)
        with pytest.raises((ServiceError, microstd.errors.ConnectionFailed)) as info:
            async for _ in stream:
                pass
        if isinstance(info.value, ServiceError):
            assert info.value.code == 503
    await asyncio.wait_for(probe.cleaned.wait(), 30)


# --- backpressure -----------------------------------------------------------------------


async def _plateau(probe: Probe) -> int:
    """Wait (up to 30 s) until the producer stops producing; returns how much it made."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    last = -1
    while loop.time() < end:
        await asyncio.sleep(0.1)
        if probe.produced == last:
            return last
        last = probe.produced
    return probe.produced


async def test_a_slow_reader_slows_the_handler(rig: Rig) -> None:
    probe = Probe()
    total = 4000
    size = 64 * 1024  # 4000 items: 256 MiB if nothing held the producer back
    async with stream_service(rig, probe), rig.client() as client:
        stream = client.stream(
            rig.name("streams"), "Streams.Endless", {"size": size, "limit": total}
        )
        await stream.__anext__()
        produced = await _plateau(probe)
        # Bounded by the transport's buffers (in process: 16 frames each way), not the stream.
        assert produced < total // 4, produced
        read = 1 + len([x async for x in stream])
        assert read == total


async def test_open_streams_are_bounded(rig: Rig) -> None:
    probe = Probe()
    async with (
        stream_service(rig, probe, limits=Limits(max_streams=1)),
        rig.client(retries=0) as client,
    ):
        first = client.stream(rig.name("streams"), "Streams.Endless", {})
        await first.__anext__()
        with pytest.raises(ServiceError) as info:
            async for _ in client.stream(rig.name("streams"), "Streams.Count", {"upto": 1}):
                pass
        assert info.value.code == 503
        await first.aclose()


async def test_refused_streams_are_retried_on_another_node(rig: Rig) -> None:
    draining = stream_service(rig, Probe())
    serving = stream_service(rig, Probe())
    async with draining, serving, rig.client(backoff=0.01) as client:
        draining.server.stop_accepting()
        for _ in range(4):
            got = [
                i async for i in client.stream(rig.name("streams"), "Streams.Count", {"upto": 2})
            ]
            assert len(got) == 2


async def test_request_items_over_max_body_are_a_413(rig: Rig) -> None:
    limits = Limits(max_body=1024)
    async with stream_service(rig, Probe(), limits=limits), rig.client(retries=0) as client:
        big = "x" * 2000
        items = [{"n": 0, "label": "a"}, {"n": 1, "label": big}]
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("streams"), "Streams.Sum", _aiter(items))
        assert info.value.code == 413
        with pytest.raises(ServiceError) as info:
            await _collect(
                client.stream(
                    rig.name("streams"), "Streams.Count", {"upto": 1, "prefix": "y" * 2000}
                ),
                [],
            )
        assert info.value.code == 413
        # Within the limit, all is well.
        assert await client.call(
            rig.name("streams"), "Streams.Sum", _aiter([{"n": 2, "label": "b"}])
        ) == {
            "sum": 2,
            "labels": ["b"],
        }
