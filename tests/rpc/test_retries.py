"""Retries and failover: only when the request certainly did not run."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web

import microstd
import microstd.registry
from microstd.client import Client
from microstd.errors import ConnectionFailed, ServiceError
from microstd.registry import Node, ServiceRecord


@pytest.fixture
def reg_url() -> str:
    return f"memory://retry{uuid.uuid4().hex[:8]}"


class FakeNode:
    """A raw aiohttp server posing as a node, to misbehave on purpose."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hits = 0
        self.runner: web.AppRunner | None = None
        self.address = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        await request.read()
        if self.mode == "drop":
            # The request reached us; drop the connection without answering.
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        if self.mode in ("503", "503-handler"):
            body = b'{"id":"fake","code":503,"detail":"draining","status":"Service Unavailable"}'
            headers = {"Content-Type": "application/json", "Microstd-Error": "1"}
            if self.mode == "503":  # the server refused it: the handler never ran
                headers["Microstd-Not-Started"] = "1"
            return web.Response(status=503, body=body, headers=headers)
        return web.Response(body=b'"fake"', headers={"Content-Type": "application/json"})

    async def __aenter__(self) -> FakeNode:
        app = web.Application()
        app.router.add_post("/{endpoint}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def register(reg_url: str, node_id: str, address: str) -> None:
    async with microstd.registry.open(reg_url) as reg:
        await reg.register(ServiceRecord("flaky", "", [Node(node_id, address)], ["F.Do"]), ttl=30)


def real_service(reg_url: str) -> microstd.Service:
    svc = microstd.Service("flaky", registry=reg_url)

    @svc.handler("F.Do")
    async def do() -> str:
        return "real"

    return svc


@pytest.fixture
async def dead_address() -> str:
    # A port that was just free: connecting to it is refused.
    async with FakeNode("ok") as fake:
        return fake.address


async def test_refused_node_fails_over(reg_url: str, dead_address: str) -> None:
    await register(reg_url, "dead", dead_address)
    async with real_service(reg_url), Client(reg_url, local=False, backoff=0.01) as c:
        replies = [await c.call("flaky", "F.Do") for _ in range(4)]
    assert replies == ["real"] * 4


async def test_all_nodes_refused_is_connection_failed(reg_url: str, dead_address: str) -> None:
    await register(reg_url, "dead", dead_address)
    async with Client(reg_url, retries=2, backoff=0.01) as c:
        with pytest.raises(ConnectionFailed, match="3 attempts"):
            await c.call("flaky", "F.Do")


async def test_503_is_retried_elsewhere(reg_url: str) -> None:
    async with FakeNode("503") as fake:
        await register(reg_url, "draining", fake.address)
        async with real_service(reg_url), Client(reg_url, local=False, backoff=0.01) as c:
            replies = [await c.call("flaky", "F.Do") for _ in range(4)]
    assert replies == ["real"] * 4
    assert fake.hits >= 1


async def test_503_everywhere_surfaces_the_error(reg_url: str) -> None:
    async with FakeNode("503") as fake:
        await register(reg_url, "draining", fake.address)
        async with Client(reg_url, retries=2, backoff=0.01) as c:
            with pytest.raises(ServiceError) as info:
                await c.call("flaky", "F.Do")
    assert info.value.code == 503
    assert fake.hits == 3


async def test_a_503_from_a_handler_that_ran_is_not_retried(reg_url: str) -> None:
    # A handler answering 503 (a dependency down) did run: retrying could repeat its work.
    async with FakeNode("503-handler") as fake:
        await register(reg_url, "answering", fake.address)
        async with Client(reg_url, retries=2, backoff=0.01) as c:
            with pytest.raises(ServiceError) as info:
                await c.call("flaky", "F.Do")
    assert info.value.code == 503
    assert fake.hits == 1


async def test_dropped_after_send_not_retried_unless_idempotent(reg_url: str) -> None:
    async with FakeNode("drop") as fake:
        await register(reg_url, "dropper", fake.address)
        async with Client(reg_url, retries=2, backoff=0.01) as c:
            with pytest.raises(ConnectionFailed, match="not idempotent"):
                await c.call("flaky", "F.Do", {"charge": 10})
            assert fake.hits == 1
            with pytest.raises(ConnectionFailed):
                await c.call("flaky", "F.Do", {"read": 1}, idempotent=True)
            assert fake.hits == 1 + 3
