"""The client builds headers and its middleware chain once: later changes still apply."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import microstd.registry
from microstd import codec
from microstd.client import Call, CallNext, Client
from microstd.registry import Node, ServiceRecord


@pytest.fixture
async def headers_node() -> AsyncIterator[str]:
    """A registry with one raw node answering with the request headers it got, lower-cased."""

    async def echo(request: web.Request) -> web.Response:
        await request.read()
        body = codec.json.dumps({k.lower(): v for k, v in request.headers.items()})
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    app = web.Application()
    app.router.add_post("/{endpoint}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    reg_url = f"memory://headers{uuid.uuid4().hex[:8]}"
    address = f"127.0.0.1:{runner.addresses[0][1]}"
    async with microstd.registry.open(reg_url) as reg:
        await reg.register(
            ServiceRecord("echo", "", [Node("echo-1", address)], ["E.Headers"]), ttl=30
        )
        yield reg_url
    await runner.cleanup()


async def test_headers_follow_a_changed_codec(headers_node: str) -> None:
    async with Client(headers_node) as client:
        first = await client.call("echo", "E.Headers", {"a": 1})
        client.codec = codec.get("application/cbor")
        second = await client.call("echo", "E.Headers", {"a": 1})
    assert first["content-type"] == "application/msgpack"
    assert second["content-type"] == "application/cbor"
    assert second["accept"] == "application/cbor"
    assert len(first["x-request-id"]) == 32
    assert first["x-request-id"] != second["x-request-id"]
    assert float(first["microstd-timeout"]) > 0


async def test_metadata_and_name_travel_per_call(headers_node: str) -> None:
    async with Client(headers_node, name="billing") as client:
        plain = await client.call("echo", "E.Headers")
        tagged = await client.call("echo", "E.Headers", metadata={"tenant": "t1"})
    assert plain["microstd-caller"] == tagged["microstd-caller"] == "billing"
    assert "microstd-meta-tenant" not in plain  # one call's metadata never leaks into the next
    assert tagged["microstd-meta-tenant"] == "t1"


async def test_middleware_added_later_is_used(headers_node: str) -> None:
    seen: list[str] = []

    async def tag(call: Call, call_next: CallNext) -> object:
        seen.append(call.endpoint)
        call.metadata["via"] = "mw"
        return await call_next(call)

    async with Client(headers_node) as client:
        before = await client.call("echo", "E.Headers")
        client.middleware.append(tag)
        after = await client.call("echo", "E.Headers")
        client.middleware.clear()
        last = await client.call("echo", "E.Headers")
    assert "microstd-meta-via" not in before
    assert after["microstd-meta-via"] == "mw"
    assert "microstd-meta-via" not in last
    assert seen == ["E.Headers"]


def test_the_client_lives_in_rpc_and_keeps_its_old_path() -> None:
    import microstd
    import microstd.client
    import microstd.rpc
    import microstd.rpc.client

    assert microstd.Client is microstd.rpc.Client is microstd.rpc.client.Client
    assert microstd.client.Client is microstd.rpc.client.Client
    assert microstd.client.Call is microstd.rpc.Call
    # Every name of the module, private ones included, is reachable the old way.
    assert microstd.client.DEFAULT_REGISTRY == microstd.rpc.client.DEFAULT_REGISTRY
