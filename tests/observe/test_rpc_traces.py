"""RPC spans through the OpenTelemetry SDK: one CLIENT span per call, one SERVER
span per request, linked through traceparent on HTTP and on the in-process path."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import microstd
import microstd.registry
from microstd import errors
from microstd.client import Client
from microstd.errors import DeadlineExceeded, ServiceError
from microstd.registry import Node
from microstd.registry import ServiceRecord as Record


@pytest.fixture
def reg_url() -> str:
    return f"memory://traces{uuid.uuid4().hex[:8]}"


def make_service(reg_url: str, name: str = "greeter") -> microstd.Service:
    svc = microstd.Service(name, registry=reg_url)

    @svc.handler("Greeter.Hello")
    async def hello(req: dict[str, str]) -> str:
        return f"hello {req['name']}"

    @svc.handler("Greeter.Missing")
    async def missing() -> None:
        raise errors.not_found("no such greeting")

    @svc.handler("Greeter.Broken")
    async def broken() -> None:
        raise ValueError("kaput")

    @svc.handler("Greeter.Slow")
    async def slow() -> None:
        await asyncio.sleep(30)

    return svc


def by_kind(spans: Any) -> dict[SpanKind, list[Any]]:
    """The RPC spans by kind (registry lookups are CLIENT spans too: left out)."""
    out: dict[SpanKind, list[Any]] = {}
    for span in spans.get_finished_spans():
        if "rpc.system" in span.attributes:
            out.setdefault(span.kind, []).append(span)
    return out


@pytest.mark.parametrize("local", [False, True], ids=["http", "in-process"])
async def test_a_call_is_a_client_span_parent_of_the_server_span(
    spans: Any, reg_url: str, local: bool
) -> None:
    async with make_service(reg_url) as svc, Client(reg_url, local=local) as client:
        assert await client.call("greeter", "Greeter.Hello", {"name": "ada"}) == "hello ada"
    kinds = by_kind(spans)
    [client_span] = kinds[SpanKind.CLIENT]
    [server_span] = kinds[SpanKind.SERVER]
    assert client_span.name == server_span.name == "Greeter/Hello"
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert client_span.parent is None  # a root: no span was current
    assert client_span.attributes["rpc.system"] == "microstd"
    assert client_span.attributes["rpc.service"] == "Greeter"
    assert client_span.attributes["rpc.method"] == "Hello"
    assert client_span.attributes["peer.service"] == "greeter"
    assert client_span.attributes["microstd.rpc.timeout"] == 10.0
    assert client_span.attributes["microstd.rpc.in_process"] is local
    host, port = svc.server.address.rsplit(":", 1)
    assert client_span.attributes["server.address"] == host
    assert client_span.attributes["server.port"] == int(port)
    assert client_span.attributes["http.response.status_code"] == 200
    assert server_span.attributes["rpc.system"] == "microstd"
    assert server_span.attributes["microstd.service"] == "greeter"
    assert server_span.attributes["microstd.node"] == svc.server.node_id
    assert len(server_span.attributes["microstd.request_id"]) == 32
    assert 0 < server_span.attributes["microstd.rpc.deadline_left"] <= 10.0
    assert server_span.attributes["http.response.status_code"] == 200
    assert client_span.status.status_code == server_span.status.status_code == StatusCode.UNSET


async def test_errors_are_recorded_with_their_status(spans: Any, reg_url: str) -> None:
    async with make_service(reg_url), Client(reg_url, local=False) as client:
        with pytest.raises(ServiceError) as missing:
            await client.call("greeter", "Greeter.Missing")
        assert missing.value.code == 404
        with pytest.raises(ServiceError) as broken:
            await client.call("greeter", "Greeter.Broken")
        assert broken.value.code == 500
    kinds = by_kind(spans)
    servers = {s.name: s for s in kinds[SpanKind.SERVER]}
    clients = {s.name: s for s in kinds[SpanKind.CLIENT]}
    # A 4xx is the caller's error: the server span is not an error, the client's is.
    assert servers["Greeter/Missing"].status.status_code == StatusCode.UNSET
    assert servers["Greeter/Missing"].attributes["http.response.status_code"] == 404
    assert clients["Greeter/Missing"].status.status_code == StatusCode.ERROR
    assert clients["Greeter/Missing"].attributes["error.type"] == "404"
    # A handler's exception: the server span is an error and holds the exception.
    server = servers["Greeter/Broken"]
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "500"
    [event] = [e for e in server.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "kaput"
    assert clients["Greeter/Broken"].status.status_code == StatusCode.ERROR


async def test_a_passed_deadline_is_visible(spans: Any, reg_url: str) -> None:
    async with make_service(reg_url), Client(reg_url, local=False) as client:
        with pytest.raises(DeadlineExceeded):
            await client.call("greeter", "Greeter.Slow", timeout=0.3)
    [client_span] = by_kind(spans)[SpanKind.CLIENT]
    assert client_span.attributes["microstd.rpc.timeout"] == 0.3
    assert client_span.attributes["error.type"] == "DeadlineExceeded"
    assert client_span.status.status_code == StatusCode.ERROR


async def test_retries_are_events_on_the_call_span(spans: Any, reg_url: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    async with make_service(reg_url) as svc, microstd.registry.open(reg_url) as reg:
        await reg.register(Record("greeter", "", [Node("aaa-dead", dead)], ["Greeter.Hello"]))
        async with Client(reg_url, local=False, backoff=0.0) as client:
            for _ in range(2):  # round robin: one of the two picks the dead node first
                assert await client.call("greeter", "Greeter.Hello", {"name": "b"}) == "hello b"
        del svc
    retried = [s for s in by_kind(spans)[SpanKind.CLIENT] if s.events]
    assert len(retried) == 1
    [span] = retried
    [event] = span.events
    assert event.name == "retry"
    assert event.attributes["microstd.node"] == "aaa-dead"
    assert event.attributes["microstd.rpc.retry_reason"].startswith("_NotSent")
    assert span.attributes["microstd.rpc.attempts"] == 2
    assert span.status.status_code == StatusCode.UNSET  # it succeeded in the end


async def test_a_call_made_in_a_handler_continues_the_trace(spans: Any, reg_url: str) -> None:
    back = make_service(reg_url, "back")
    front = microstd.Service("front", registry=reg_url)

    @front.handler("Front.Ask")
    async def ask() -> str:
        reply: str = await front.client.call("back", "Greeter.Hello", {"name": "front"})
        return reply

    async with back, front, Client(reg_url) as client:
        assert await client.call("front", "Front.Ask") == "hello front"
    finished = [s for s in spans.get_finished_spans() if "rpc.system" in s.attributes]
    assert len({s.context.trace_id for s in finished}) == 1
    parent_of = {
        s.name + "/" + s.kind.name: s.parent.span_id if s.parent else None for s in finished
    }
    ids = {s.name + "/" + s.kind.name: s.context.span_id for s in finished}
    assert parent_of["Front/Ask/CLIENT"] is None
    assert parent_of["Front/Ask/SERVER"] == ids["Front/Ask/CLIENT"]
    assert parent_of["Greeter/Hello/CLIENT"] == ids["Front/Ask/SERVER"]
    assert parent_of["Greeter/Hello/SERVER"] == ids["Greeter/Hello/CLIENT"]


async def test_nothing_is_recorded_once_tracing_is_off(spans: Any, reg_url: str) -> None:
    from microstd.observe import configure

    configure(tracing=False)
    async with make_service(reg_url), Client(reg_url, local=False) as client:
        await client.call("greeter", "Greeter.Hello", {"name": "x"})
    assert spans.get_finished_spans() == ()


@pytest.mark.parametrize("local", [False, True], ids=["websocket", "in-process"])
async def test_a_server_stream_is_one_client_span_parent_of_its_server_span(
    spans: Any, reg_url: str, local: bool
) -> None:
    from collections.abc import AsyncIterator

    from opentelemetry import trace

    svc = microstd.Service("counter", registry=reg_url)
    seen_in_handler: list[int] = []

    @svc.handler("Counter.Upto")
    async def upto(req: dict[str, int]) -> AsyncIterator[int]:
        seen_in_handler.append(trace.get_current_span().get_span_context().span_id)
        for n in range(req["n"]):
            yield n

    async with svc, Client(reg_url, local=local) as client:
        got = [item async for item in client.stream("counter", "Counter.Upto", {"n": 3})]
        # The consumer of the items is not inside the stream's span.
        assert not trace.get_current_span().get_span_context().is_valid
    assert got == [0, 1, 2]
    kinds = by_kind(spans)
    [client_span] = kinds[SpanKind.CLIENT]
    [server_span] = kinds[SpanKind.SERVER]
    assert client_span.name == server_span.name == "Counter/Upto"
    assert server_span.parent.span_id == client_span.context.span_id
    assert seen_in_handler == [server_span.context.span_id]
    assert client_span.attributes["microstd.rpc.streaming"] is True
    assert client_span.attributes["microstd.rpc.stream.items"] == 3
    assert server_span.attributes["microstd.rpc.streaming"] is True
    assert client_span.status.status_code == StatusCode.UNSET


async def test_a_call_over_nats_is_traced_like_one_over_http(
    spans: Any, reg_url: str, nats_url: str
) -> None:
    svc = microstd.Service(f"n{uuid.uuid4().hex[:6]}", registry=reg_url, transport=nats_url)

    @svc.handler("Greeter.Hello")
    async def hello(req: dict[str, str]) -> str:
        return f"hello {req['name']}"

    async with svc, Client(reg_url, transport=nats_url) as client:
        assert await client.call(svc.name, "Greeter.Hello", {"name": "n"}) == "hello n"
    kinds = by_kind(spans)
    [client_span] = kinds[SpanKind.CLIENT]
    [server_span] = kinds[SpanKind.SERVER]
    assert server_span.parent.span_id == client_span.context.span_id
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.attributes["microstd.service"] == svc.name


def test_a_sync_client_call_continues_the_calling_threads_trace(spans: Any) -> None:
    import threading

    from opentelemetry import trace

    from microstd.observe import state
    from microstd.rpc.blocking import SyncClient

    reg = f"sync{uuid.uuid4().hex[:6]}"
    svc = make_service(f"memory://{reg}")
    ready = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with svc:
                ready.set()
                await asyncio.to_thread(stop.wait)

        asyncio.run(main())

    server = threading.Thread(target=serve)
    server.start()
    try:
        assert ready.wait(10)
        tracer = trace.get_tracer("test", tracer_provider=state.tracer_provider)
        with (
            SyncClient(f"memory://{reg}", local=False) as client,
            tracer.start_as_current_span("job") as job,
        ):
            assert client.call("greeter", "Greeter.Hello", {"name": "s"}) == "hello s"
    finally:
        stop.set()
        server.join(10)
    [client_span] = by_kind(spans)[SpanKind.CLIENT]
    assert client_span.parent.span_id == job.get_span_context().span_id
