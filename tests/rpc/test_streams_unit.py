"""Streaming pieces on their own: endpoint kinds, in-process channels, middleware."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import pytest

import microstd
from microstd.client import Client
from microstd.rpc import Context
from microstd.rpc.convert import Endpoint
from microstd.rpc.frames import memory_pair
from microstd.rpc.server import Next


async def unary(req: dict[str, int]) -> int:
    return 1


async def server_stream(req: dict[str, int]) -> AsyncIterator[int]:
    yield 1


async def client_stream(reqs: AsyncIterator[int]) -> int:
    return 1


async def client_stream_iterable(reqs: AsyncIterable[int]) -> int:
    return 1


async def bidi(reqs: AsyncIterator[int]) -> AsyncIterator[int]:
    async for r in reqs:
        yield r


@pytest.mark.parametrize(
    ("fn", "kind"),
    [
        (unary, "unary"),
        (server_stream, "server"),
        (client_stream, "client"),
        (client_stream_iterable, "client"),
        (bidi, "bidi"),
    ],
)
def test_endpoint_kinds_come_from_the_signature(fn: Any, kind: str) -> None:
    endpoint = Endpoint("X.Y", fn)
    assert endpoint.kind == kind
    assert endpoint.streams is (kind != "unary")
    if kind in ("client", "bidi"):
        assert endpoint.item_type is int


def test_sync_generators_and_sync_stream_takers_are_refused() -> None:
    def numbers() -> Any:
        yield 1

    def takes_stream(reqs: AsyncIterator[int]) -> int:
        return 1

    with pytest.raises(TypeError, match="async generators"):
        Endpoint("X.Gen", numbers)
    with pytest.raises(TypeError, match="must be async"):
        Endpoint("X.Take", takes_stream)


async def test_memory_channel_delivers_what_was_sent_before_close() -> None:
    a, b = memory_pair()
    for n in range(5):
        await a.send(bytes([1, n]))
    await a.close()
    got = []
    while (frame := await b.receive()) is not None:
        got.append(frame)
    assert got == [bytes([1, n]) for n in range(5)]
    with pytest.raises(ConnectionResetError):
        await b.send(b"\x01")


async def test_memory_channel_close_frees_a_blocked_sender() -> None:
    a, b = memory_pair()
    full = asyncio.Event()
    sender = asyncio.ensure_future(_flood(a, b, full))
    await full.wait()  # the window is full: the sender waits
    await b.close()  # the receiver leaves
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(sender, 30)


async def _flood(channel: Any, peer: Any, full: asyncio.Event) -> None:
    while True:
        if peer._inbox.full():
            full.set()
        await channel.send(b"\x01x")


async def test_server_middleware_wraps_streams() -> None:
    registry = f"memory://mw{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    async def tag(ctx: Context, body: object, call_next: Next) -> object:
        seen.append(ctx.endpoint)
        replies = await call_next(ctx, body)

        async def tagged() -> AsyncIterator[object]:
            async for item in replies:  # type: ignore[attr-defined]
                yield {"tagged": item}

        return tagged()

    svc = microstd.Service("mw", registry=registry, middleware=[tag])

    @svc.handler("Mw.Count")
    async def count(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["n"]):
            yield n

    async with svc, Client(registry) as client:
        got = [x async for x in client.stream("mw", "Mw.Count", {"n": 2})]
    assert got == [{"tagged": 0}, {"tagged": 1}]
    assert seen == ["Mw.Count"]
