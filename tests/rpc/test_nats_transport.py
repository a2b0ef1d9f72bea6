"""The NATS transport's own behaviour (the RPC contract runs on it too:
tests/contract/test_rpc_calls.py)."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import aiohttp
import pytest

import microstd
from microstd.client import Client
from microstd.errors import ConnectionFailed, InvalidArgument, NotFound
from microstd.rpc.nats import subject_for

pytestmark = pytest.mark.services


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def echo_service(nats_url: str, name: str, registry: str = "memory://") -> microstd.Service:
    svc = microstd.Service(name, registry=registry, transport=nats_url)

    @svc.handler("Echo.Back")
    async def back(req: object) -> object:
        return req

    @svc.handler("Echo.Ask")
    async def ask(req: dict[str, str]) -> object:
        # A call from a handler goes through the service's own transport.
        return await svc.client.call(req["peer"], "Echo.Back", {"from": name})

    return svc


async def test_calls_need_no_registry(nats_url: str) -> None:
    name = unique("echo")
    # The service registers in one registry, the client knows another: NATS routes.
    async with (
        echo_service(nats_url, name, "memory://"),
        Client("memory://", transport=nats_url) as client,
    ):
        assert await client.call(name, "Echo.Back", {"a": [1, 2]}) == {"a": [1, 2]}
        assert await client.call(name, "Echo.Back", b"\x00raw") == b"\x00raw"


async def test_json_and_cbor_clients(nats_url: str) -> None:
    name = unique("echo")
    async with echo_service(nats_url, name):
        for ctype in ("application/json", "application/cbor"):
            async with Client(transport=nats_url, content_type=ctype) as client:
                assert await client.call(name, "Echo.Back", {"x": 1}) == {"x": 1}


async def test_a_handler_calls_through_the_services_transport(nats_url: str) -> None:
    front, back = unique("front"), unique("back")
    async with (
        echo_service(nats_url, front),
        echo_service(nats_url, back),
        Client(transport=nats_url) as client,
    ):
        assert await client.call(front, "Echo.Ask", {"peer": back}) == {"from": front}


async def test_http_stays_on_beside_nats(nats_url: str) -> None:
    name = unique("both")
    registry = f"memory://{unique('reg')}"
    svc = echo_service(nats_url, name, registry)
    async with svc, Client(registry, local=False) as http_client:
        assert svc.record().nodes[0].metadata["transport"] == "nats"
        assert await http_client.call(name, "Echo.Back", 5) == 5
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{svc.server.address}/health/live") as resp,
        ):
            assert resp.status == 200


def test_bad_transports_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="NATS URL"):
        Client(transport="grpc://x")
    with pytest.raises(InvalidArgument, match="NATS URL"):
        microstd.Service("x", transport="amqp://x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_nats_server_is_connection_failed() -> None:
    url = f"nats://127.0.0.1:{_free_port()}?connect_timeout=1"
    with pytest.raises(ConnectionFailed, match="unreachable"):
        await microstd.Service(unique("x"), registry="memory://", transport=url).start()
    async with Client(transport=url, retries=0) as client:
        with pytest.raises(ConnectionFailed):
            await client.call("x", "X.Y")


def test_subjects_keep_dotted_services_apart() -> None:
    # Service "a" subscribes to microstd.rpc.a.*.> : never to service "a.b"'s calls.
    assert subject_for("a", "S.M", 2.5) == "microstd.rpc.a.2500.S.M"
    assert subject_for("a.b", "S.M", 0.0004) == "microstd.rpc.a~b.0.S.M"


async def test_dotted_service_names(nats_url: str) -> None:
    outer = unique("a")
    inner = outer + ".b"  # its subjects must not reach "a-...", nor the reverse
    async with (
        echo_service(nats_url, outer),
        echo_service(nats_url, inner),
        Client(transport=nats_url) as client,
    ):
        for _ in range(5):
            assert await client.call(inner, "Echo.Ask", {"peer": outer}) == {"from": inner}


async def test_credentials_do_not_show(nats_url: str) -> None:
    url = nats_url.replace("nats://", "nats://user:s3cret@")  # (no auth on the test server)
    async with Client(transport=url, retries=0) as client:
        with pytest.raises(NotFound) as info:
            await client.call(unique("nobody"), "X.Y")
        assert "s3cret" not in str(info.value)
        assert "127.0.0.1" in str(info.value)
        assert "s3cret" not in repr(client._nats)


@pytest.mark.parametrize("retries", [0, 2])
async def test_a_refused_call_is_tried_retries_plus_one_times(nats_url: str, retries: int) -> None:
    name = unique("echo")
    async with echo_service(nats_url, name) as svc:
        server = svc.server
        arrived: list[str] = []
        route = server._route

        def counted(ctx: Any, *args: Any) -> Any:
            arrived.append(ctx.endpoint)
            return route(ctx, *args)

        server._route = counted  # type: ignore[method-assign]
        server.accepting = False  # refuses unstarted, still in the queue group
        async with Client(transport=nats_url, retries=retries, backoff=0.001) as client:
            with pytest.raises(microstd.errors.ServiceError) as refused:
                await client.call(name, "Echo.Back", {"a": 1})
            assert refused.value.code == 503
            assert len(arrived) == retries + 1
            server.accepting = True
            assert await client.call(name, "Echo.Back", {"a": 2}) == {"a": 2}
            assert len(arrived) == retries + 2
