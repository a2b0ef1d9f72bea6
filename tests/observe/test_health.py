"""`/health/live` and `/health/ready` on a running Service: checks, backends, drain."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

import microstd
import microstd.registry
import microstd.store
from microstd.errors import InvalidArgument


@pytest.fixture
def reg_url() -> str:
    return f"memory://health{uuid.uuid4().hex[:8]}"


async def get(address: str, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}{path}") as resp:
        return resp.status, await resp.json()


async def test_ready_lists_the_registry_and_backends_and_user_checks(reg_url: str) -> None:
    svc = microstd.Service("healthy", registry=reg_url, store="memory://", locks="memory://")

    @svc.health_check("cache")
    def cache() -> bool:
        return True

    @svc.health_check("db")
    async def db() -> None:
        await asyncio.sleep(0)

    async with svc:
        status, body = await get(svc.server.address, "/health/ready")
        assert status == 200
        assert body["status"] == "ok"
        assert body["checks"] == {
            "registry": "ok",
            "store": "ok",
            "sync": "ok",
            "cache": "ok",
            "db": "ok",
        }
        assert (await get(svc.server.address, "/health"))[0] == 200
        assert (await get(svc.server.address, "/health/live"))[0] == 200


async def test_a_failing_user_check_answers_503_naming_it(reg_url: str) -> None:
    svc = microstd.Service("flaky", registry=reg_url)
    healthy = True

    @svc.health_check("db")
    def db() -> None:
        if not healthy:
            raise ConnectionError("db is down")

    async with svc:
        assert (await get(svc.server.address, "/health/ready"))[0] == 200
        healthy = False
        status, body = await get(svc.server.address, "/health/ready")
        assert status == 503
        assert body["status"] == "failing"
        assert body["checks"]["db"] == "failed: ConnectionError: db is down"
        assert body["checks"]["registry"] == "ok"
        # Liveness does not depend on checks: the process is fine.
        assert (await get(svc.server.address, "/health/live"))[0] == 200
        healthy = True
        assert (await get(svc.server.address, "/health/ready"))[0] == 200


async def test_a_check_returning_false_or_hanging_fails(reg_url: str) -> None:
    svc = microstd.Service("slowcheck", registry=reg_url, health_timeout=0.2)
    svc.add_health_check("flag", lambda: False)

    @svc.health_check("hangs")
    async def hangs() -> None:
        await asyncio.sleep(60)

    async with svc:
        status, body = await get(svc.server.address, "/health/ready")
        assert status == 503
        assert body["checks"]["flag"] == "failed"
        assert body["checks"]["hangs"] == "failed: no answer within 0.2s"


async def test_not_ready_once_the_node_is_no_longer_registered(reg_url: str) -> None:
    async with microstd.Service("gone", registry=reg_url) as svc:
        assert (await get(svc.server.address, "/health/ready"))[0] == 200
        async with microstd.registry.open(reg_url) as reg:
            await reg.deregister(svc.record())
        status, body = await get(svc.server.address, "/health/ready")
        assert status == 503
        assert body["checks"]["registry"].startswith("failed:")


async def test_not_ready_when_a_backend_does_not_answer(reg_url: str) -> None:
    store = microstd.store.open("memory://")
    async with microstd.Service("nostore", registry=reg_url, store=store) as svc:
        assert (await get(svc.server.address, "/health/ready"))[0] == 200
        await store.close()  # the store now refuses every operation
        status, body = await get(svc.server.address, "/health/ready")
        assert status == 503
        assert body["checks"]["store"].startswith("failed: Closed")


async def test_ready_flips_to_503_during_drain_while_the_listener_still_serves(
    reg_url: str,
) -> None:
    svc = microstd.Service("draining", registry=reg_url, grace=20.0, drain_delay=0.5)
    release = asyncio.Event()

    @svc.handler("Drain.Hold")
    async def hold() -> str:
        await release.wait()
        return "done"

    await svc.start()
    address = svc.server.address
    try:
        client = microstd.Client(reg_url)
        in_flight = asyncio.ensure_future(client.call("draining", "Drain.Hold", timeout=30))
        deadline = time.monotonic() + 10
        while svc.server.inflight == 0:
            assert time.monotonic() < deadline, "the call never reached the handler"
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(svc.stop())
        # Not ready at once, while the listener is open and still answers.
        deadline = time.monotonic() + 10
        while True:
            status, body = await get(address, "/health/ready")
            if status == 503:
                break
            assert time.monotonic() < deadline, "never turned not ready"
            await asyncio.sleep(0.01)
        assert body["status"] == "draining"
        assert (await get(address, "/health/live"))[0] == 200
        release.set()
        assert await in_flight == "done"
        await stopping
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(address, "/health/live")  # now the listener is closed
        await client.close()
    finally:
        release.set()
        await svc.stop()


async def test_drain_delay_keeps_taking_requests_after_readiness_flips(reg_url: str) -> None:
    svc = microstd.Service("delayed", registry=reg_url, drain_delay=5.0)

    @svc.handler("Delayed.Ping")
    async def ping() -> str:
        return "pong"

    await svc.start()
    address = svc.server.address
    stopping = asyncio.ensure_future(svc.stop())
    try:
        deadline = time.monotonic() + 10
        while (await get(address, "/health/ready"))[0] != 503:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        # Not ready, deregistered, and yet a request that still arrives is served.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://{address}/Delayed.Ping",
                data=b"{}",
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            assert resp.status == 200
            assert await resp.json() == "pong"
    finally:
        await stopping


def test_bad_health_options_are_refused(reg_url: str) -> None:
    with pytest.raises(InvalidArgument):
        microstd.Service("bad", registry=reg_url, health_timeout=0)
    with pytest.raises(InvalidArgument):
        microstd.Service("bad", registry=reg_url, drain_delay=-1)
    svc = microstd.Service("bad", registry=reg_url)
    svc.add_health_check("one", lambda: None)
    with pytest.raises(InvalidArgument):
        svc.add_health_check("one", lambda: None)
    with pytest.raises(InvalidArgument):
        svc.add_health_check("", lambda: None)


@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_a_network_broker_that_stops_answering_makes_the_service_not_ready(
    reg_url: str, kind: str, server_factory: Any
) -> None:
    server = server_factory(kind)
    url = f"{kind}://127.0.0.1:{server.port}"
    svc = microstd.Service("brokered", registry=reg_url, broker=url, health_timeout=1.0)

    @svc.subscriber("jobs.*")
    async def on_job(msg: object) -> None:
        pass

    async with svc:
        status, body = await get(svc.server.address, "/health/ready")
        assert (status, body["checks"]["broker"]) == (200, "ok")
        server.pause()  # SIGSTOP: the socket stays open, nothing answers
        try:
            status, body = await get(svc.server.address, "/health/ready")
            assert status == 503
            assert body["checks"]["broker"].startswith("failed")
            assert body["checks"]["registry"] == "ok"
        finally:
            server.resume()
        deadline = time.monotonic() + 20
        while (await get(svc.server.address, "/health/ready"))[0] != 200:
            assert time.monotonic() < deadline, "never ready again"
            await asyncio.sleep(0.05)
