"""One trace across OS processes, and a real Prometheus scrape.

The test process calls `front` (a Service in a child process) through a Redis
registry; front's handler publishes on a Redis broker; `back` (another child)
handles the message. Each process has its own OpenTelemetry SDK with an
in-memory exporter; the children hand theirs over through `Obs.Spans`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest
from _children import finish, run
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

import microstd.registry
from microstd.client import Client


async def address_of(registry: str, name: str) -> str:
    async with microstd.registry.open(registry) as reg:
        [found] = await reg.lookup(name)
    return found.nodes[0].address


async def wait_registered(registry: str, *names: str) -> None:
    deadline = time.monotonic() + 30
    async with microstd.registry.open(registry) as reg:
        for name in names:
            while True:
                try:
                    if await reg.lookup(name):
                        break
                except KeyError:
                    pass
                assert time.monotonic() < deadline, f"{name} did not register"
                await asyncio.sleep(0.05)


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"front{tag}", f"back{tag}"


def children(redis_url: str, names: tuple[str, str], **env: str) -> list[Any]:
    front, back = names
    common = {"MICROSTD_REGISTRY": redis_url, "OBS_BROKER": redis_url, **env}
    return [
        run(env={**common, "OBS_NAME": front, "OBS_ROLE": "front"}),
        run(env={**common, "OBS_NAME": back, "OBS_ROLE": "back"}),
    ]


async def test_one_trace_from_client_through_service_and_event_to_subscriber(
    spans: Any, redis_url: str, names: tuple[str, str]
) -> None:
    front, back = names
    procs = children(redis_url, names, OBS_TRACE="1")
    try:
        await wait_registered(redis_url, front, back)
        async with Client(redis_url) as client:
            assert await client.call(front, "Front.Order", {"item": "tea"}) == {"ok": True}
            [client_span] = [s for s in spans.get_finished_spans() if s.name == "Front/Order"]
            trace_id = f"{client_span.context.trace_id:032x}"

            async def recorded(name: str) -> list[dict[str, Any]]:
                got: list[dict[str, Any]] = await client.call(name, "Obs.Spans")
                return [s for s in got if s["trace_id"] == trace_id]

            front_spans = await recorded(front)
            deadline = time.monotonic() + 30
            while not (back_spans := await recorded(back)):
                assert time.monotonic() < deadline, "the subscriber never handled the event"
                await asyncio.sleep(0.05)
    finally:
        for proc, out in procs:
            proc.terminate()
            finish(proc, out)

    assert client_span.kind == SpanKind.CLIENT
    assert client_span.name == "Front/Order"
    assert client_span.attributes["peer.service"] == front
    by_name = {s["name"]: s for s in front_spans}
    server = by_name["Front/Order"]
    publish = by_name["publish orders.created"]
    [process] = back_spans
    # client (test) -> server (front) -> publish (front) -> process (back)
    assert server["kind"] == "SERVER"
    assert server["parent_id"] == f"{client_span.context.span_id:016x}"
    assert server["attributes"]["rpc.system"] == "microstd"
    assert server["attributes"]["rpc.service"] == "Front"
    assert server["attributes"]["rpc.method"] == "Order"
    assert server["attributes"]["microstd.service"] == front
    assert server["attributes"]["http.response.status_code"] == 200
    assert publish["kind"] == "PRODUCER"
    assert publish["parent_id"] == server["span_id"]
    assert publish["attributes"]["messaging.system"] == "redis"
    assert publish["attributes"]["messaging.operation.type"] == "send"
    assert publish["attributes"]["messaging.destination.name"] == "orders.created"
    assert process["kind"] == "CONSUMER"
    assert process["name"] == "process orders.created"
    assert process["parent_id"] == publish["span_id"]
    assert process["attributes"]["messaging.operation.type"] == "process"
    assert process["attributes"]["messaging.destination.name"] == "orders.created"
    assert process["attributes"]["messaging.destination.template"] == "orders.*"
    assert process["attributes"]["messaging.consumer.group.name"] == "back"
    assert process["status"] == "UNSET"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return samples(await resp.text())


async def test_metrics_scraped_from_each_service_move_with_the_calls(
    redis_url: str, names: tuple[str, str]
) -> None:
    front, back = names
    procs = children(redis_url, names, OBS_METRICS="1")
    try:
        await wait_registered(redis_url, front, back)
        front_at = await address_of(redis_url, front)
        back_at = await address_of(redis_url, back)
        requests = (
            "microstd_rpc_server_requests_total",
            (("endpoint", "Front.Order"), ("service", front), ("status", "200")),
        )
        published = (
            "microstd_broker_published_total",
            (("system", "redis"), ("topic", "orders.created")),
        )
        delivered = (
            "microstd_broker_delivered_total",
            (("pattern", "orders.*"), ("system", "redis")),
        )
        before_front = await scrape(front_at)
        before_back = await scrape(back_at)
        async with Client(redis_url) as client:
            for n in range(3):
                await client.call(front, "Front.Order", {"item": n})
        after_front = await scrape(front_at)
        assert after_front[requests] - before_front.get(requests, 0) == 3
        assert after_front[published] - before_front.get(published, 0) == 3
        duration = ("microstd_rpc_server_duration_seconds_count", requests[1])
        assert after_front[duration] - before_front.get(duration, 0) == 3
        inflight = ("microstd_rpc_server_inflight", (("service", front),))
        assert after_front[inflight] == 0
        heartbeats = (
            "microstd_registry_heartbeats_total",
            (("outcome", "ok"), ("service", front)),
        )
        assert after_front[heartbeats] >= 1
        deadline = time.monotonic() + 30
        while (await scrape(back_at)).get(delivered, 0) - before_back.get(delivered, 0) < 3:
            assert time.monotonic() < deadline, "the subscriber's delivered count never moved"
            await asyncio.sleep(0.05)
        after_back = await scrape(back_at)
        assert after_back[delivered] - before_back.get(delivered, 0) == 3
        depth = ("microstd_broker_queue_depth", (("pattern", "orders.*"), ("system", "redis")))
        assert after_back[depth] == 0
    finally:
        for proc, out in procs:
            proc.terminate()
            finish(proc, out)
