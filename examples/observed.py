"""Two observed services: `orders` takes an RPC call and publishes an event that
`shipping` handles. One trace runs through both; both serve /metrics and
/health/ready. Needs `pip install 'microstd[otel,prometheus]' opentelemetry-sdk`.

    python observed.py      # both in one process: prints the trace and a few metrics

Across processes, through a shared registry and broker (each process prints
its spans with the SDK's console exporter):

    export MICROSTD_REGISTRY=redis://127.0.0.1:6379/0 MICROSTD_BROKER=redis://127.0.0.1:6379/0
    microstd run observed:shipping &
    microstd run observed:orders --log-format json &
    microstd call orders Orders.Place '{"item": "tea"}'
    curl -s http://ADDRESS/metrics | grep '^microstd_rpc_server_requests_total'
    curl -s http://ADDRESS/health/ready
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import microstd

REGISTRY = os.environ.get("MICROSTD_REGISTRY")
BROKER = os.environ.get("MICROSTD_BROKER")

log = logging.getLogger("observed")


def console_tracing() -> None:
    """Print every span as JSON (the SDK's console exporter), once per process."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "observed-example"}))
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def orders() -> microstd.Service:
    """The `orders` service: `Orders.Place` publishes `orders.placed`."""
    if REGISTRY:
        console_tracing()
    svc = microstd.Service("orders", registry=REGISTRY, broker=BROKER, metrics=True)

    @svc.handler("Orders.Place")
    async def place(req: dict[str, Any]) -> dict[str, Any]:
        log.info("placing an order for %s", req["item"])
        await svc.broker.publish("orders.placed", {"item": req["item"]})
        return {"placed": req["item"]}

    return svc


def shipping(shipped: asyncio.Queue[str] | None = None) -> microstd.Service:
    """The `shipping` service: ships each order placed (one instance per order)."""
    if REGISTRY:
        console_tracing()
    svc = microstd.Service("shipping", registry=REGISTRY, broker=BROKER, metrics=True)

    @svc.subscriber("orders.*", queue="shipping")
    async def ship(msg: microstd.broker.Message) -> None:
        order: Any = msg.decode()
        log.info("shipping %s", order["item"])
        if shipped is not None:
            shipped.put_nowait(order["item"])

    return svc


def print_trace(spans: list[Any]) -> None:
    """The spans of one trace as a tree, children in the order they started."""
    children: dict[int | None, list[Any]] = {}
    for span in sorted(spans, key=lambda s: s.start_time):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def show(span: Any, depth: int) -> None:
        where = span.attributes.get("microstd.service") or span.attributes.get("peer.service")
        suffix = f"  ({where})" if where and span.kind.name == "SERVER" else ""
        print(f"{'  ' * depth}{span.kind.name:<8} {span.name}{suffix}")
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)


async def metric_lines(address: str, *names: str) -> list[str]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"http://{address}/metrics") as resp:
        text = await resp.text()
    return [line for line in text.splitlines() if line.split("{")[0] in names]


async def together() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from microstd import observe

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observe.configure(tracer_provider=provider, backend_spans=False)

    shipped: asyncio.Queue[str] = asyncio.Queue()
    front, back = orders(), shipping(shipped)
    async with front, back, microstd.Client() as client:
        reply = await client.call("orders", "Orders.Place", {"item": "tea"})
        print(f"reply: {reply}")
        print(f"shipped: {await asyncio.wait_for(shipped.get(), 10)}")
        for _ in range(500):  # the subscriber's span ends just after its handler returns
            if any(s.kind.name == "CONSUMER" for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.01)
        [call] = [s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT"]
        trace_id = call.context.trace_id
        print_trace([s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id])
        for line in await metric_lines(
            front.server.address, "microstd_rpc_server_requests_total"
        ) + await metric_lines(back.server.address, "microstd_broker_delivered_total"):
            print(line)


if __name__ == "__main__":
    if REGISTRY:
        raise SystemExit("with MICROSTD_REGISTRY set, run each service with microstd run")
    asyncio.run(together())
