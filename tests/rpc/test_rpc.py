"""RPC semantics, on both paths: over HTTP and in-process (local=True)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pydantic
import pytest

import microstd
from microstd import codec
from microstd.client import Call, CallNext, Client
from microstd.errors import DeadlineExceeded, NotFound, ServiceError
from microstd.rpc import Context, current_context
from microstd.rpc.server import Next


@dataclasses.dataclass
class HelloReq:
    name: str


@dataclasses.dataclass
class HelloReply:
    msg: str


class Sum(pydantic.BaseModel):
    a: int
    b: int


class Total(pydantic.BaseModel):
    total: int


def make_service(reg: str, name: str = "greeter", **kw: object) -> microstd.Service:
    svc = microstd.Service(name, registry=reg, version="1.0", **kw)  # type: ignore[arg-type]

    @svc.handler("Greeter.Hello")
    async def hello(req: HelloReq) -> HelloReply:
        return HelloReply(f"hello {req.name}")

    @svc.handler("Greeter.Sum")
    def add(req: Sum) -> Total:  # sync: runs on a thread
        return Total(total=req.a + req.b)

    @svc.handler("Greeter.Echo")
    async def echo(req: object) -> object:
        return req

    # Untyped: the server calls these directly and makes their results plain after.
    @svc.handler("Greeter.Untyped")
    async def untyped(req: dict) -> object:  # type: ignore[type-arg]
        return HelloReply(f"hello {req['name']}")

    @svc.handler("Greeter.Later")
    async def later(req: dict) -> object:  # type: ignore[type-arg]
        async def reply() -> HelloReply:
            await asyncio.sleep(0)
            return HelloReply(f"later {req['name']}")

        return reply()  # an awaitable result is awaited

    @svc.handler("Greeter.Boom")
    async def boom(req: dict[str, object]) -> None:
        raise RuntimeError("database password is hunter2")

    @svc.handler("Greeter.Teapot")
    async def teapot() -> None:
        raise ServiceError("greeter", 418, "short and stout", "I'm a Teapot")

    @svc.handler("Greeter.Node")
    async def node() -> str:
        return svc.server.node_id

    @svc.handler("Greeter.Context")
    async def context(req: dict[str, object]) -> dict[str, object]:
        ctx = current_context()
        assert ctx is not None
        return {
            "request_id": ctx.request_id,
            "caller": ctx.caller,
            "metadata": dict(ctx.metadata),
            "has_deadline": ctx.deadline is not None,
        }

    return svc


@pytest.fixture
def reg_url() -> str:
    return f"memory://rpc{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["http", "local"])
async def client(request: pytest.FixtureRequest, reg_url: str) -> AsyncIterator[Client]:
    async with make_service(reg_url), Client(reg_url, local=request.param == "local") as c:
        yield c


async def test_dataclass_pydantic_and_plain(client: Client) -> None:
    assert await client.call("greeter", "Greeter.Hello", {"name": "ada"}) == {"msg": "hello ada"}
    assert await client.call("greeter", "Greeter.Sum", Sum(a=2, b=3).model_dump()) == {"total": 5}
    reply = await client.call("greeter", "Greeter.Sum", {"a": 1, "b": 1}, response_type=Total)
    assert reply == Total(total=2)
    body = {"k": [1, 2.5, None, True, "x", b"raw"]}
    assert await client.call("greeter", "Greeter.Echo", body) == body
    assert await client.call("greeter", "Greeter.Untyped", {"name": "ada"}) == {"msg": "hello ada"}
    assert await client.call("greeter", "Greeter.Later", {"name": "bo"}) == {"msg": "later bo"}


async def test_reply_is_a_copy(client: Client) -> None:
    body = {"nested": {"a": 1}}
    reply = await client.call("greeter", "Greeter.Echo", body)
    assert reply == body
    assert reply is not body
    assert reply["nested"] is not body["nested"]


async def test_unknown_endpoint_is_404(client: Client) -> None:
    with pytest.raises(ServiceError) as info:
        await client.call("greeter", "Greeter.Nope", {})
    assert (info.value.code, info.value.status, info.value.id) == (404, "Not Found", "greeter")
    assert "Greeter.Nope" in info.value.detail


async def test_handler_exception_is_500_without_traceback(client: Client) -> None:
    with pytest.raises(ServiceError) as info:
        await client.call("greeter", "Greeter.Boom", {})
    err = info.value
    assert (err.code, err.status) == (500, "Internal Server Error")
    assert "hunter2" not in err.detail
    assert "Traceback" not in err.detail
    assert "request id" in err.detail


async def test_handler_service_error_crosses_as_is(client: Client) -> None:
    with pytest.raises(ServiceError) as info:
        await client.call("greeter", "Greeter.Teapot")
    assert info.value.to_dict() == {
        "id": "greeter",
        "code": 418,
        "detail": "short and stout",
        "status": "I'm a Teapot",
    }


async def test_bad_request_body_is_400(client: Client) -> None:
    with pytest.raises(ServiceError) as info:
        await client.call("greeter", "Greeter.Hello", {"nom": "x"})
    assert info.value.code == 400
    with pytest.raises(ServiceError) as info:
        await client.call("greeter", "Greeter.Sum", {"a": "not a number", "b": 1})
    assert info.value.code == 400


async def test_unknown_service_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="nobody"):
        await client.call("nobody", "X.Y", {})


async def test_metadata_propagates(client: Client) -> None:
    reply = await client.call("greeter", "Greeter.Context", {}, metadata={"tenant": "acme"})
    assert reply["metadata"] == {"tenant": "acme"}
    assert reply["has_deadline"] is True
    assert len(reply["request_id"]) == 32


async def test_deadline_stops_the_handler(reg_url: str) -> None:
    svc = microstd.Service("slow", registry=reg_url)
    finished: list[str] = []

    @svc.handler("Slow.Work")
    async def work(req: dict[str, float]) -> str:
        await asyncio.sleep(req["seconds"])
        finished.append("done")
        return "done"

    async with svc:
        for local in (True, False):
            async with Client(reg_url, local=local) as c:
                with pytest.raises(DeadlineExceeded):
                    await c.call("slow", "Slow.Work", {"seconds": 1.0}, timeout=0.2)
                assert await c.call("slow", "Slow.Work", {"seconds": 0.0}, timeout=2) == "done"
        await asyncio.sleep(1.1)  # past when the slow calls would have finished
    assert finished == ["done", "done"]


async def test_chained_calls_share_request_id_and_caller(reg_url: str) -> None:
    front = microstd.Service("front", registry=reg_url)
    back = make_service(reg_url, "back")

    @front.handler("Front.Relay")
    async def relay(req: dict[str, object]) -> object:
        ctx = current_context()
        assert ctx is not None
        inner = await front.client.call("back", "Greeter.Context", {})
        return {"outer": ctx.request_id, "inner": inner}

    async with front, back, Client(reg_url, local=False) as c:
        reply = await c.call("front", "Front.Relay", {})
    assert reply["inner"]["request_id"] == reply["outer"]
    assert reply["inner"]["caller"] == "front"
    assert reply["inner"]["has_deadline"] is True


async def test_middleware_wraps_calls_and_handlers(reg_url: str) -> None:
    seen: list[str] = []

    async def server_mw(ctx: Context, body: object, call_next: Next) -> object:
        seen.append(f"server:{ctx.endpoint}")
        result = await call_next(ctx, body)
        return {"wrapped": result}

    async def client_mw(call: Call, call_next: CallNext) -> object:
        seen.append(f"client:{call.endpoint}")
        call.metadata["via"] = "mw"
        return await call_next(call)

    svc = make_service(reg_url, middleware=[server_mw])
    async with svc, Client(reg_url, middleware=[client_mw]) as c:
        reply = await c.call("greeter", "Greeter.Context", {})
    assert seen == ["client:Greeter.Context", "server:Greeter.Context"]
    assert reply["wrapped"]["metadata"] == {"via": "mw"}


async def test_round_robin_spreads_over_nodes(reg_url: str) -> None:
    svc_a, svc_b = make_service(reg_url), make_service(reg_url)
    async with svc_a, svc_b, Client(reg_url, local=False) as c:
        seen = [await c.call("greeter", "Greeter.Node") for _ in range(6)]
    ids = sorted([svc_a.server.node_id, svc_b.server.node_id])
    assert sorted(set(seen)) == ids
    assert seen.count(ids[0]) == seen.count(ids[1]) == 3


async def test_content_types_and_accept(reg_url: str) -> None:
    async with make_service(reg_url) as svc:
        url = f"http://{svc.server.address}/Greeter.Hello"
        async with aiohttp.ClientSession() as http:
            req = codec.msgpack.dumps({"name": "m"})
            headers = {"Content-Type": "application/msgpack", "Accept": "application/json"}
            async with http.post(url, data=req, headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/json"
                assert codec.json.loads(await resp.read()) == {"msg": "hello m"}
            async with http.post(url, data=b"{}", headers={"Content-Type": "text/x-nope"}) as resp:
                assert resp.status == 415
                assert resp.headers["Microstd-Error"] == "1"
            headers = {"Content-Type": "application/json", "Accept": "image/png"}
            async with http.post(url, data=b"{}", headers=headers) as resp:
                assert resp.status == 406
            headers = {"Content-Type": "application/json"}
            async with http.post(url, data=b"{not json", headers=headers) as resp:
                assert resp.status == 400
                error = codec.json.loads(await resp.read())
                assert set(error) == {"id", "code", "detail", "status"}


async def test_health(reg_url: str) -> None:
    svc = make_service(reg_url)
    async with svc, aiohttp.ClientSession() as http:
        base = f"http://{svc.server.address}"
        async with http.get(f"{base}/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        svc.server.stop_accepting()
        async with http.get(f"{base}/health") as resp:
            assert resp.status == 503
        async with http.get(f"{base}/health/live") as resp:
            assert resp.status == 200


async def test_handler_with_two_required_args_is_rejected() -> None:
    svc = microstd.Service("x", registry="memory://")
    with pytest.raises(TypeError, match="at most one"):
        svc.add_handler("X.Y", lambda a, b: None)
    with pytest.raises(ValueError, match=r"Service\.Method"):
        svc.add_handler("nodot", lambda: None)


async def test_random_selector_reaches_every_node(reg_url: str) -> None:
    svc_a, svc_b = make_service(reg_url), make_service(reg_url)
    async with svc_a, svc_b, Client(reg_url, selector="random") as c:
        seen = {await c.call("greeter", "Greeter.Node") for _ in range(40)}
    assert seen == {svc_a.server.node_id, svc_b.server.node_id}


def test_client_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="selector"):
        Client("memory://", selector="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        Client("memory://", timeout=0)
