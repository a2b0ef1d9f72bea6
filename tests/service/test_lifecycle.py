"""The Service lifecycle in one process: register, heartbeat, drain, deregister."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

import microstd
import microstd.registry
from microstd.client import Client
from microstd.errors import NotFound, ServiceError


@pytest.fixture
def reg_url() -> str:
    return f"memory://life{uuid.uuid4().hex[:8]}"


def slow_service(reg_url: str, **kw: object) -> microstd.Service:
    svc = microstd.Service("slow", registry=reg_url, **kw)  # type: ignore[arg-type]

    @svc.handler("Slow.Work")
    async def work(req: dict[str, float]) -> str:
        await asyncio.sleep(req["seconds"])
        return "done"

    return svc


async def test_registers_real_address_and_deregisters_on_stop(reg_url: str) -> None:
    svc = slow_service(reg_url, version="2.1", metadata={"zone": "a"})
    async with microstd.registry.open(reg_url) as reg:
        async with svc:
            [found] = await reg.lookup("slow")
            assert found.version == "2.1"
            assert found.endpoints == ["Slow.Work"]
            [node] = found.nodes
            assert node.address == svc.server.address
            assert not node.address.endswith(":0")
            assert node.metadata["zone"] == "a"
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://{node.address}/health") as resp,
            ):
                assert resp.status == 200
        with pytest.raises(NotFound):
            await reg.lookup("slow")


async def test_heartbeat_outlives_the_ttl(reg_url: str) -> None:
    async with slow_service(reg_url, ttl=0.4), microstd.registry.open(reg_url) as reg:
        await asyncio.sleep(1.0)
        [found] = await reg.lookup("slow")
        assert len(found.nodes) == 1


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for `condition` (a loaded machine may take a while), failing after 10 s."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_stop_drains_in_flight_and_refuses_new(reg_url: str) -> None:
    svc = microstd.Service("slow", registry=reg_url, grace=10.0)
    release = asyncio.Event()

    @svc.handler("Slow.Work")
    async def work(req: dict[str, float]) -> str:
        await release.wait()  # in flight until the test says so, however slow the machine
        return "done"

    async def in_flight() -> bool:
        return svc.server.inflight == 1

    async def deregistered() -> bool:
        async with microstd.registry.open(reg_url) as reg:
            try:
                await reg.lookup("slow")
            except NotFound:
                return True
            return False

    await svc.start()
    async with Client(reg_url, local=False, retries=0) as client:
        inflight = asyncio.ensure_future(client.call("slow", "Slow.Work", {"seconds": 0}))
        await until(in_flight, "the call reached the handler")
        stopping = asyncio.ensure_future(svc.stop())
        # Deregistered already, and new requests are turned away with 503 while draining.
        await until(deregistered, "the stopping service deregistered")
        reply = await svc.server.dispatch(
            "Slow.Work", b'{"seconds": 0}', "application/json", None, {}
        )
        assert reply.status == 503
        assert not stopping.done()  # the call in flight holds the stop
        release.set()
        assert await inflight == "done"
        await stopping
    assert not svc.running


async def test_grace_bounds_the_drain(reg_url: str) -> None:
    svc = slow_service(reg_url, grace=0.2)
    await svc.start()
    async with Client(reg_url, local=False, retries=0) as client:
        stuck = asyncio.ensure_future(client.call("slow", "Slow.Work", {"seconds": 30}))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await svc.stop()
        assert loop.time() - began < 5
        with pytest.raises((ServiceError, microstd.errors.ConnectionFailed)):
            await stuck


async def test_start_failure_cleans_up(reg_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        svc = slow_service(reg_url, address=f"127.0.0.1:{port}")
        with pytest.raises(OSError):
            await svc.start()
    assert not svc.running
    async with microstd.registry.open(reg_url) as reg:
        assert await reg.list_services() == []


async def test_default_registry_and_in_process_call() -> None:
    svc = microstd.Service(f"default{uuid.uuid4().hex[:6]}")

    @svc.handler("Greeter.Hello")
    async def hello(req: dict[str, str]) -> dict[str, str]:
        return {"msg": f"hello {req['name']}"}

    async with svc:
        reply = await microstd.Client().call(svc.name, "Greeter.Hello", {"name": "a"})
    assert reply == {"msg": "hello a"}


def test_registry_record_and_runnable_service_are_distinct() -> None:
    assert microstd.Service is not microstd.registry.ServiceRecord
    svc = microstd.Service("named", registry="memory://")
    record = svc.record()
    assert isinstance(record, microstd.registry.ServiceRecord)
    assert record.name == "named"


def test_the_record_s_old_name_still_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="now microstd.registry.ServiceRecord") as seen:
        old = microstd.registry.Service  # type: ignore[attr-defined]
    assert old is microstd.registry.ServiceRecord
    assert seen[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match="ServiceRecord"):
        from microstd.registry.base import Service  # type: ignore[attr-defined]  # noqa: F401
    with pytest.raises(AttributeError):
        _ = microstd.registry.Servic  # type: ignore[attr-defined]
