"""`SyncClient`: the same calls from plain threads, no event loop of the caller's own."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

import microstd
from microstd._loopthread import LoopThread
from microstd.errors import Closed, DeadlineExceeded, NotFound, ServiceError
from microstd.rpc import current_context


@dataclasses.dataclass
class Total:
    total: int
    tenant: str | None = None


@pytest.fixture
def served() -> Iterator[str]:
    """A service running on its own loop thread, as in another part of the program;
    yields its registry URL."""
    registry = f"memory://syncc{uuid.uuid4().hex[:8]}"
    svc = microstd.Service("calc", registry=registry)

    @svc.handler("Calc.Add")
    async def add(req: dict[str, int]) -> dict[str, object]:
        ctx = current_context()
        assert ctx is not None
        return {"total": req["a"] + req["b"], "tenant": ctx.metadata.get("tenant")}

    @svc.handler("Calc.Div")
    def div(req: dict[str, int]) -> float:
        if req["b"] == 0:
            raise microstd.errors.bad_request("division by zero")
        return req["a"] / req["b"]

    @svc.handler("Calc.Slow")
    async def slow() -> None:
        import asyncio

        await asyncio.sleep(3600)

    loop = LoopThread("test-service")
    loop.run(svc.start())
    try:
        yield registry
    finally:
        loop.run(svc.stop())
        loop.stop()


def test_calls_from_a_plain_thread(served: str) -> None:
    with microstd.SyncClient(served) as client:
        reply = client.call("calc", "Calc.Add", {"a": 2, "b": 3}, metadata={"tenant": "acme"})
        assert reply == {"total": 5, "tenant": "acme"}
        assert client.call("calc", "Calc.Div", {"a": 6, "b": 3}) == 2.0
        typed = client.call("calc", "Calc.Add", {"a": 1, "b": 1}, response_type=Total)
        assert isinstance(typed, Total)
        assert typed.total == 2


def test_errors_are_the_clients(served: str) -> None:
    with microstd.SyncClient(served, retries=0) as client:
        with pytest.raises(ServiceError) as info:
            client.call("calc", "Calc.Div", {"a": 1, "b": 0})
        assert (info.value.code, info.value.detail) == (400, "division by zero")
        with pytest.raises(NotFound):
            client.call("nobody", "X.Y")
        with pytest.raises(DeadlineExceeded):
            client.call("calc", "Calc.Slow", timeout=0.2)


def test_many_threads_share_one_client(served: str) -> None:
    results: dict[int, list[int]] = {}
    failures: list[BaseException] = []

    with microstd.SyncClient(served, content_type="application/json") as client:

        def worker(n: int) -> None:
            try:
                results[n] = [
                    client.call("calc", "Calc.Add", {"a": n, "b": i})["total"] for i in range(20)
                ]
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not failures
    assert results == {n: [n + i for i in range(20)] for n in range(8)}


def test_close_is_idempotent_and_final(served: str) -> None:
    client = microstd.SyncClient(served)
    assert client.call("calc", "Calc.Add", {"a": 1, "b": 2})["total"] == 3
    client.close()
    client.close()
    with pytest.raises(Closed):
        client.call("calc", "Calc.Add", {"a": 1, "b": 2})


def test_shares_the_clients_options() -> None:
    with microstd.SyncClient(
        "memory://", selector="random", timeout=3.0, retries=1, content_type="application/cbor"
    ) as client:
        inner = client.client
        assert (inner.selector, inner.timeout, inner.retries) == ("random", 3.0, 1)
        assert inner.codec.content_type == "application/cbor"
    with pytest.raises(ValueError, match="selector"):
        microstd.SyncClient("memory://", selector="fastest")


@pytest.fixture
def streaming() -> Iterator[str]:
    registry = f"memory://syncs{uuid.uuid4().hex[:8]}"
    svc = microstd.Service("nums", registry=registry)

    @svc.handler("Nums.Range")
    async def numbers(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["n"]):
            yield n

    @svc.handler("Nums.Sum")
    async def total(reqs: AsyncIterator[int]) -> int:
        return sum([n async for n in reqs])

    @svc.handler("Nums.Square")
    async def square(reqs: AsyncIterator[int]) -> AsyncIterator[int]:
        async for n in reqs:
            yield n * n

    loop = LoopThread("test-streams")
    loop.run(svc.start())
    try:
        yield registry
    finally:
        loop.run(svc.stop())
        loop.stop()


def test_streams_from_a_plain_thread(streaming: str) -> None:
    with microstd.SyncClient(streaming) as client:
        assert list(client.stream("nums", "Nums.Range", {"n": 5})) == [0, 1, 2, 3, 4]
        assert client.call("nums", "Nums.Sum", iter(range(10))) == 45
        assert list(client.stream("nums", "Nums.Square", (n for n in range(4)))) == [0, 1, 4, 9]
        # Breaking out closes the stream; the client goes on working.
        for n in client.stream("nums", "Nums.Range", {"n": 1000}):
            if n == 3:
                break
        assert client.call("nums", "Nums.Sum", iter([1, 2])) == 3
