"""The RPC contract for unary calls: what a call means, the same on every transport.

The `rig` fixture (tests/contract/_rpc_rig.py) gives a service factory and a
client for each transport. Each test declares its handlers on
`rig.service(...)` and calls them through `rig.client()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from _rpc_rig import TRANSPORTS, Rig

import microstd
from microstd import errors
from microstd.errors import DeadlineExceeded, ServiceError
from microstd.rpc import current_context


@pytest.fixture(params=TRANSPORTS)
def rig(request: pytest.FixtureRequest) -> Rig:
    return Rig(request.param)


# --- errors keep their meaning ------------------------------------------------------


def errors_service(rig: Rig) -> microstd.Service:
    svc = rig.service("errs")
    raised: dict[str, BaseException] = {
        "not_found": errors.NotFound("no order 42"),
        "conflict": errors.Conflict("revision 3 is not the latest"),
        "invalid_key": errors.InvalidKey("keys are non-empty strings"),
        "invalid_topic": errors.InvalidTopic("bad topic 'a..b'"),
        "validation": errors.ValidationError("expected int", "$.qty", "int", "str"),
        "encode": errors.EncodeError("cannot encode object of type Foo", "$.x"),
        "lock_timeout": errors.LockTimeout("lock 'invoice/1' not obtained within 1s"),
        "deadline": errors.DeadlineExceeded("inventory Stock.Get: no reply within 1s"),
        "not_supported": errors.NotSupported("watch is not supported on s3"),
        "connection": errors.ConnectionFailed("redis at 127.0.0.1:1 unreachable"),
        "helper": errors.forbidden("tenant acme may not read this"),
        "teapot": ServiceError("elsewhere", 418, "short and stout", "I'm a Teapot"),
        "odd_code": ServiceError("", 200, "not an error code"),
        "plain": RuntimeError("database password is hunter2"),
    }

    @svc.handler("Errs.Raise")
    async def raise_(req: dict[str, str]) -> None:
        raise raised[req["kind"]]

    @svc.handler("Errs.RaiseSync")
    def raise_sync(req: dict[str, str]) -> None:
        raise raised[req["kind"]]

    return svc


@pytest.mark.parametrize("endpoint", ["Errs.Raise", "Errs.RaiseSync"])
@pytest.mark.parametrize(
    ("kind", "code", "status", "detail"),
    [
        ("not_found", 404, "Not Found", "no order 42"),
        ("conflict", 409, "Conflict", "revision 3 is not the latest"),
        ("invalid_key", 400, "Bad Request", "keys are non-empty strings"),
        ("invalid_topic", 400, "Bad Request", "bad topic 'a..b'"),
        ("validation", 400, "Bad Request", "expected int at $.qty"),
        ("encode", 400, "Bad Request", "cannot encode object of type Foo at $.x"),
        ("lock_timeout", 409, "Conflict", "not obtained within 1s"),
        ("deadline", 504, "Gateway Timeout", "no reply within 1s"),
        ("not_supported", 501, "Not Implemented", "not supported on s3"),
        ("connection", 503, "Service Unavailable", "unreachable"),
        ("helper", 403, "Forbidden", "tenant acme may not read this"),
        ("teapot", 418, "I'm a Teapot", "short and stout"),
        ("plain", 500, "Internal Server Error", "internal error (request id "),
    ],
)
async def test_handler_errors_keep_their_meaning(
    rig: Rig, endpoint: str, kind: str, code: int, status: str, detail: str
) -> None:
    async with errors_service(rig), rig.client(retries=2, backoff=0.01) as client:
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("errs"), endpoint, {"kind": kind})
    err = info.value
    assert (err.code, err.status) == (code, status)
    assert detail in err.detail
    assert err.id == ("elsewhere" if kind == "teapot" else rig.name("errs"))
    assert "hunter2" not in err.detail


async def test_a_handler_error_with_a_non_error_code_is_a_500_on_the_wire(rig: Rig) -> None:
    async with errors_service(rig), rig.client() as client:
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("errs"), "Errs.Raise", {"kind": "odd_code"})
    assert (info.value.code, info.value.status) == (500, "Internal Server Error")
    assert info.value.detail == "not an error code"


async def test_errors_in_handlers_are_not_retried(rig: Rig) -> None:
    calls = 0
    svc = rig.service("once")

    @svc.handler("Once.Fail")
    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise errors.unavailable("the ledger is down")

    async with svc, rig.client(retries=3, backoff=0.01) as client:
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("once"), "Once.Fail")
    assert info.value.code == 503
    assert calls == 1  # the handler ran: a 503 it answers is not a refusal


# --- deadlines, metadata, request ids ------------------------------------------------


async def test_deadline_stops_the_handler_and_the_call(rig: Rig) -> None:
    svc = rig.service("slow")
    stopped = asyncio.Event()

    @svc.handler("Slow.Sleep")
    async def sleep() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    async with svc, rig.client() as client:
        with pytest.raises(DeadlineExceeded):
            await client.call(rig.name("slow"), "Slow.Sleep", timeout=0.2)
        await asyncio.wait_for(stopped.wait(), 30)


async def test_deadline_stops_a_handler_that_worked_past_it_before_its_first_await(
    rig: Rig,
) -> None:
    # The server arms a handler's deadline when it first suspends (one that never
    # does cannot be stopped anyway): one already past by then is stopped there.
    svc = rig.service("busy")
    stopped = asyncio.Event()

    @svc.handler("Busy.Work")
    async def work() -> None:
        busy_until = time.monotonic() + 0.3  # past the caller's deadline, then it waits
        while time.monotonic() < busy_until:
            pass
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    async with svc, rig.client() as client:
        with pytest.raises(DeadlineExceeded):
            await client.call(rig.name("busy"), "Busy.Work", timeout=0.2)
        await asyncio.wait_for(stopped.wait(), 30)


async def test_metadata_request_id_and_caller_travel(rig: Rig) -> None:
    svc = rig.service("ctx")

    @svc.handler("Ctx.Get")
    async def get() -> dict[str, object]:
        ctx = current_context()
        assert ctx is not None
        return {
            "rid": ctx.request_id,
            "caller": ctx.caller,
            "meta": dict(ctx.metadata),
            "left": ctx.time_left(),
        }

    async with svc, rig.client(name="front") as client:
        reply = await client.call(
            rig.name("ctx"), "Ctx.Get", metadata={"Tenant": "acme"}, timeout=5
        )
    assert reply["meta"] == {"tenant": "acme"}
    assert reply["caller"] == "front"
    assert len(reply["rid"]) == 32
    assert 0 < reply["left"] <= 5


async def test_unknown_endpoint_is_404(rig: Rig) -> None:
    async with errors_service(rig), rig.client() as client:
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("errs"), "Errs.Nope", {})
    assert (info.value.code, info.value.id) == (404, rig.name("errs"))


# --- instances: spreading, failover, absence -------------------------------------------


def node_service(rig: Rig) -> microstd.Service:
    svc = rig.service("nodes")

    @svc.handler("Nodes.Which")
    async def which() -> str:
        return svc.server.node_id

    return svc


async def test_calls_spread_over_the_instances(rig: Rig) -> None:
    a, b = node_service(rig), node_service(rig)
    async with a, b, rig.client() as client:
        seen = {await client.call(rig.name("nodes"), "Nodes.Which") for _ in range(40)}
    assert seen == {a.server.node_id, b.server.node_id}


async def test_a_stopped_instance_hands_its_calls_to_the_others(rig: Rig) -> None:
    a, b = node_service(rig), node_service(rig)
    async with b:
        await a.start()
        async with rig.client(backoff=0.01) as client:
            await a.stop()
            seen = {await client.call(rig.name("nodes"), "Nodes.Which") for _ in range(10)}
    assert seen == {b.server.node_id}


async def test_a_draining_instance_refuses_and_calls_are_retried(rig: Rig) -> None:
    a, b = node_service(rig), node_service(rig)
    async with a, b, rig.client(backoff=0.01, retries=10) as client:
        a.server.stop_accepting()
        seen = {await client.call(rig.name("nodes"), "Nodes.Which") for _ in range(10)}
    assert seen == {b.server.node_id}


async def test_a_service_nobody_serves_is_not_found(rig: Rig) -> None:
    async with rig.client(retries=0) as client:
        with pytest.raises(errors.NotFound, match=rig.name("nobody")):
            await client.call(rig.name("nobody"), "X.Y", {})


@dataclasses.dataclass
class Order:
    item: str
    qty: int


async def test_models_in_and_out(rig: Rig) -> None:
    svc = rig.service("models")

    @svc.handler("Models.Double")
    async def double(order: Order) -> Order:
        return Order(order.item, order.qty * 2)

    async with svc, rig.client() as client:
        reply = await client.call(rig.name("models"), "Models.Double", {"item": "a", "qty": 2})
        assert reply == {"item": "a", "qty": 4}
        typed = await client.call(
            rig.name("models"), "Models.Double", {"item": "b", "qty": 1}, response_type=Order
        )
        assert typed == Order("b", 2)
        with pytest.raises(ServiceError) as info:
            await client.call(rig.name("models"), "Models.Double", {"item": "c", "qty": "x"})
        assert info.value.code == 400
