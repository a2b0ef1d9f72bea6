"""A service for the observability tests, run in its own process by `microstd run`.

    OBS_NAME=front MICROSTD_REGISTRY=redis://... OBS_BROKER=redis://... \
        python -m microstd run proc_observed:make --log-format json

`OBS_ROLE=front` serves `Front.Order`, which logs a line and publishes the
order on `orders.created`; `OBS_ROLE=back` subscribes to `orders.*`.
With `OBS_TRACE=1` the process configures the OpenTelemetry SDK with an
in-memory exporter, and `Obs.Spans` returns what it recorded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import microstd

log = logging.getLogger("proc_observed")


def _spans(exporter: Any) -> list[dict[str, Any]]:
    out = []
    for span in exporter.get_finished_spans():
        ctx = span.get_span_context()
        out.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "events": [e.name for e in span.events],
            }
        )
    return out


def make() -> microstd.Service:
    exporter = None
    if os.environ.get("OBS_TRACE"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    role = os.environ.get("OBS_ROLE", "front")
    svc = microstd.Service(
        os.environ["OBS_NAME"],
        registry=os.environ["MICROSTD_REGISTRY"],
        broker=os.environ.get("OBS_BROKER"),
        store=os.environ.get("OBS_STORE"),
        grace=5.0,
        metrics=bool(os.environ.get("OBS_METRICS")),
    )

    if role == "front":

        @svc.handler("Front.Order")
        async def order(req: dict[str, Any]) -> dict[str, Any]:
            log.info("ordering %s", req.get("item"))
            await svc.broker.publish("orders.created", req)
            return {"ok": True}

    else:

        @svc.subscriber("orders.*", queue="back")
        async def on_order(msg: microstd.broker.Message) -> None:
            log.info("got order %s", msg.decode())

    @svc.handler("Obs.Spans")
    async def spans() -> list[dict[str, Any]]:
        return _spans(exporter) if exporter is not None else []

    return svc
