"""The OpenTelemetry side of the hooks: spans, attributes, context in headers.

Imported only while tracing is on (`state.tracer` set), so only when the
OpenTelemetry API is installed. Context travels as the W3C `traceparent` /
`tracestate` headers through the globally configured propagator (W3C trace
context and baggage unless the application chose otherwise): in RPC request
headers (HTTP and in-process alike) and in broker message headers.

Attribute names follow the OpenTelemetry semantic conventions for RPC and
messaging; what they do not name is under `microstd.`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = [
    "client_span",
    "current_ids",
    "extract",
    "inject",
    "process_span",
    "publish_span",
    "record_exception",
    "server_span",
    "span_event",
]

RPC_SYSTEM = "microstd"


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's context to outgoing `headers`."""
    propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> Any:
    """The context a caller sent in `headers` (an empty one when none)."""
    return propagate.extract(headers)


def rpc_names(endpoint: str) -> tuple[str, str]:
    """`"Greeter.Hello"` -> `("Greeter", "Hello")`: rpc.service and rpc.method."""
    service, _, method = endpoint.rpartition(".")
    return service, method


def server_span(tracer: Any, service: str, node: str, ctx: Any, headers: Mapping[str, str]) -> Any:
    """A SERVER span for one request, child of the caller's span if it sent one."""
    rpc_service, method = rpc_names(ctx.endpoint)
    attributes: dict[str, Any] = {
        "rpc.system": RPC_SYSTEM,
        "rpc.service": rpc_service,
        "rpc.method": method,
        "microstd.service": service,
        "microstd.node": node,
        "microstd.request_id": ctx.request_id,
    }
    if ctx.caller:
        attributes["microstd.caller"] = ctx.caller
    left = ctx.time_left()
    if left is not None:
        attributes["microstd.rpc.deadline_left"] = round(left, 6)
    return tracer.start_span(
        f"{rpc_service}/{method}",
        context=extract(headers),
        kind=SpanKind.SERVER,
        attributes=attributes,
    )


def end_server_span(span: Any, status: int) -> None:
    """Record the reply's status (an error status from 500 on, as for HTTP servers)."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR, f"status {status}"))
    span.end()


def client_span(tracer: Any, service: str, endpoint: str, timeout: float | None) -> Any:
    """A CLIENT span for one call (all its attempts), child of the current span."""
    rpc_service, method = rpc_names(endpoint)
    attributes: dict[str, Any] = {
        "rpc.system": RPC_SYSTEM,
        "rpc.service": rpc_service,
        "rpc.method": method,
        "peer.service": service,
    }
    if timeout is not None:
        attributes["microstd.rpc.timeout"] = timeout
    return tracer.start_span(f"{rpc_service}/{method}", kind=SpanKind.CLIENT, attributes=attributes)


def stream_server_span(
    tracer: Any, service: str, node: str, endpoint: str, headers: Mapping[str, str]
) -> Any:
    """A SERVER span for one streaming call (its context is read later, by the stream)."""
    rpc_service, method = rpc_names(endpoint)
    return tracer.start_span(
        f"{rpc_service}/{method}",
        context=extract(headers),
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": RPC_SYSTEM,
            "rpc.service": rpc_service,
            "rpc.method": method,
            "microstd.service": service,
            "microstd.node": node,
            "microstd.rpc.streaming": True,
        },
    )


def end_client_span(span: Any, status: int | None, exc: BaseException | None) -> None:
    """Any failure is an error for the caller; `status` is the reply's when there was one."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if exc is not None:
        span.set_attribute("error.type", str(status) if status else type(exc).__name__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()


def use(span: Any) -> Any:
    """Make `span` current (a context manager; it does not end the span)."""
    return trace.use_span(span, end_on_exit=False)


def span_event(name: str, attributes: Mapping[str, Any]) -> None:
    """Add an event to the current span (a retry, a redelivery)."""
    trace.get_current_span().add_event(name, dict(attributes))


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current span."""
    trace.get_current_span().set_attributes(dict(attributes))


def record_exception(exc: BaseException) -> None:
    """Record a handler's exception on the current span (the request's)."""
    trace.get_current_span().record_exception(exc)


def current_ids() -> tuple[str, str]:
    """The current trace and span ids as hex, or `("", "")` outside a span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def publish_span(tracer: Any, system: str, topic: str) -> Any:
    """A PRODUCER span for one publish (made current by the caller)."""
    return tracer.start_span(
        f"publish {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": topic,
        },
    )


def process_span(tracer: Any, system: str, pattern: str, group: str | None, message: Any) -> Any:
    """A CONSUMER span for one delivery, child of the publisher's span."""
    attributes: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": message.topic,
        "messaging.destination.template": pattern,
        "messaging.message.body.size": len(message.data),
    }
    if group:
        attributes["messaging.consumer.group.name"] = group
    msg_id = message.id
    if msg_id is not None:
        attributes["messaging.message.id"] = msg_id
        attributes["microstd.message.delivery_count"] = message.delivery_count
    return tracer.start_span(
        f"process {message.topic}",
        context=extract(message.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )


def end_span(span: Any, exc: BaseException | None) -> None:
    """End `span`, as an error when `exc` is given."""
    if exc is not None:
        span.set_attribute("error.type", type(exc).__name__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.end()


def internal_span(tracer: Any, name: str, attributes: Mapping[str, Any]) -> Any:
    """A CLIENT span for a backend operation (store, locks, registry)."""
    return tracer.start_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))


async def awaited(span: Any, work: Awaitable[Any]) -> Any:
    """Await `work` with `span` current, then end it (as an error if `work` raised)."""
    with use(span):
        try:
            result = await work
        except BaseException as exc:
            end_span(span, exc)
            raise
    span.end()
    return result
