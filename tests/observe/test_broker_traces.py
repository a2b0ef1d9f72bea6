"""Broker spans on every backend: PRODUCER on publish, CONSUMER per delivery, the
context carried in the message's headers (core and durable subscriptions)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import microstd.broker
from microstd.observe import configure, state

CORE = {
    "memory-rust": lambda request, tmp: "memory://?impl=rust",
    "memory-python": lambda request, tmp: "memory://?impl=python",
    "file": lambda request, tmp: f"file://{tmp}/broker.db",
    "redis": lambda request, tmp: request.getfixturevalue("redis_url"),
    "nats": lambda request, tmp: request.getfixturevalue("nats_url"),
    "postgresql": lambda request, tmp: request.getfixturevalue("postgres_url"),
    "amqp": lambda request, tmp: request.getfixturevalue("amqp_url"),
}
#: The backends with durable subscriptions (as tests/contract/test_durable.py), keyed
#: by their `messaging.system` (the URL scheme).
DURABLE = {
    "memory-rust": lambda request, tmp: f"memory://d{uuid.uuid4().hex}",
    "memory-python": lambda request, tmp: f"memory://d{uuid.uuid4().hex}?impl=python",
    "file": lambda request, tmp: f"file://{tmp}/durable.db",
    "postgresql": lambda request, tmp: (
        f"{request.getfixturevalue('postgres_url')}?table=d{uuid.uuid4().hex[:12]}"
    ),
    "amqp": lambda request, tmp: request.getfixturevalue("amqp_url"),
}


async def until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def spans_of(spans: Any, trace_id: int) -> dict[SpanKind, list[Any]]:
    out: dict[SpanKind, list[Any]] = {}
    for span in spans.get_finished_spans():
        if span.context.trace_id == trace_id:
            out.setdefault(span.kind, []).append(span)
    return out


async def publish_and_receive(
    spans: Any, url: str, options: dict[str, Any], system: str
) -> tuple[Any, Any, Any, microstd.broker.Message]:
    topic = f"t{uuid.uuid4().hex[:8]}"
    got: list[microstd.broker.Message] = []
    inner: list[Any] = []

    async def handler(msg: microstd.broker.Message) -> None:
        inner.append(trace.get_current_span().get_span_context())
        got.append(msg)

    tracer = trace.get_tracer("test", tracer_provider=state.tracer_provider)
    async with microstd.broker.open(url) as broker:
        sub = await broker.subscribe(f"{topic}.*", handler, **options)
        with tracer.start_as_current_span("request") as parent:
            await broker.publish(f"{topic}.created", {"n": 1}, headers={"k": "v"})
        await until(lambda: got, "the message never arrived")
        # The CONSUMER span ends once the handler has returned, a moment after `got`
        # fills: wait for it rather than race it.
        trace_id = parent.get_span_context().trace_id
        await until(
            lambda: SpanKind.CONSUMER in spans_of(spans, trace_id), "no CONSUMER span ended"
        )
        await sub.unsubscribe()
    kinds = spans_of(spans, trace_id)
    [producer] = kinds[SpanKind.PRODUCER]
    [consumer] = kinds[SpanKind.CONSUMER]
    assert producer.name == f"publish {topic}.created"
    assert producer.parent.span_id == parent.get_span_context().span_id
    assert consumer.name == f"process {topic}.created"
    assert consumer.parent.span_id == producer.context.span_id
    # The handler runs with the CONSUMER span current: its own spans are children.
    assert inner[0].span_id == consumer.context.span_id
    for span in (producer, consumer):
        assert span.attributes["messaging.system"] == system
        assert span.attributes["messaging.destination.name"] == f"{topic}.created"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.destination.template"] == f"{topic}.*"
    [msg] = got
    assert msg.headers["k"] == "v"  # the caller's headers are kept beside the context
    assert msg.headers["traceparent"].split("-")[2] == f"{producer.context.span_id:016x}"
    assert msg.decode() == {"n": 1}
    return producer, consumer, parent, msg


@pytest.mark.parametrize("backend", list(CORE))
async def test_core_subscriptions_continue_the_publishers_trace(
    spans: Any, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = CORE[backend](request, tmp_path)
    system = backend.split("-")[0]
    await publish_and_receive(spans, url, {}, system)


@pytest.mark.parametrize("backend", list(DURABLE))
async def test_durable_subscriptions_continue_the_publishers_trace(
    spans: Any, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = DURABLE[backend](request, tmp_path)
    durable = f"d{uuid.uuid4().hex[:8]}"
    _, consumer, _, msg = await publish_and_receive(
        spans, url, {"durable": durable}, backend.split("-")[0]
    )
    assert consumer.attributes["messaging.consumer.group.name"] == durable
    assert consumer.attributes["messaging.message.id"] == msg.id
    assert consumer.attributes["microstd.message.delivery_count"] == 1


async def test_a_failing_handler_makes_an_error_span_and_a_redelivery_is_visible(
    spans: Any,
) -> None:
    url = f"memory://d{uuid.uuid4().hex}"
    attempts: list[int] = []

    async def handler(msg: microstd.broker.Message) -> None:
        attempts.append(msg.delivery_count)
        if msg.delivery_count == 1:
            raise RuntimeError("first try fails")

    async with microstd.broker.open(url) as broker:
        broker.on_error(lambda exc, sub: None)
        sub = await broker.subscribe("jobs.*", handler, durable="jobs", backoff=[0.01])
        await broker.publish("jobs.run", b"x")
        await until(lambda: len(attempts) == 2, "the message was not redelivered")
        await sub.unsubscribe()
    consumers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    first, second = sorted(consumers, key=lambda s: s.attributes["microstd.message.delivery_count"])
    assert first.status.status_code == StatusCode.ERROR
    assert first.attributes["error.type"] == "RuntimeError"
    assert second.status.status_code == StatusCode.UNSET
    assert second.attributes["microstd.message.delivery_count"] == 2
    # Both deliveries belong to the publisher's trace.
    [producer] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert first.parent.span_id == second.parent.span_id == producer.context.span_id


def test_the_blocking_surface_is_traced_too(spans: Any) -> None:
    got = threading.Event()
    with microstd.broker.open_sync("memory://") as broker:
        broker.subscribe("a.*", lambda msg: got.set())
        broker.publish("a.b", b"x")
        assert got.wait(10)
    kinds = {s.kind for s in spans.get_finished_spans()}
    assert {SpanKind.PRODUCER, SpanKind.CONSUMER} <= kinds


async def test_a_broker_opened_with_nothing_on_is_left_alone() -> None:
    configure(tracing=False)
    broker = microstd.broker.open("memory://")
    assert "publish" not in vars(broker)  # the class's own method, unwrapped
    await broker.close()
