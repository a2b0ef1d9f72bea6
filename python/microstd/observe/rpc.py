"""RPC hooks: a span and metrics per request (server) and per call (client).

The server and client call these only while `state.on` (tracing or metrics
on); otherwise they take their plain path after one attribute read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from microstd.errors import ServiceError
from microstd.observe._state import state

if TYPE_CHECKING:
    from microstd.rpc.client import Call
    from microstd.rpc.context import Context
    from microstd.rpc.server import Reply

T = TypeVar("T")

__all__ = [
    "call",
    "carried",
    "inject",
    "note_attempt",
    "note_failure",
    "note_retry",
    "serve",
    "serve_stream",
    "traced_stream",
]


async def serve(
    service: str, node: str, ctx: Context, headers: Mapping[str, str], work: Awaitable[Reply]
) -> Reply:
    """Run one admitted request's `work` inside a SERVER span, recording its metrics."""
    tracer = state.tracer
    metrics = state.metrics
    start = time.perf_counter()
    if tracer is None:
        reply = await work
    else:
        from microstd.observe import _otel

        span = _otel.server_span(tracer, service, node, ctx, headers)
        try:
            with _otel.use(span):
                reply = await work
        except BaseException as exc:  # cancelled: the request was abandoned
            _otel.end_span(span, exc)
            raise
        _otel.end_server_span(span, reply.status)
    if metrics is not None:
        metrics.rpc_served(service, ctx.endpoint, reply.status, time.perf_counter() - start)
    return reply


async def call(
    client_timeout: float, call: Call, run: Callable[[Call], Awaitable[object]]
) -> object:
    """Run one client call (middleware and attempts) inside a CLIENT span, with metrics."""
    tracer = state.tracer
    metrics = state.metrics
    timeout = call.timeout if call.timeout is not None else client_timeout
    start = time.perf_counter()
    status: int | None = None
    try:
        if tracer is None:
            result = await run(call)
        else:
            from microstd.observe import _otel

            span = _otel.client_span(tracer, call.service, call.endpoint, timeout)
            try:
                with _otel.use(span):
                    result = await run(call)
            except BaseException as exc:
                status = exc.code if isinstance(exc, ServiceError) else None
                _otel.end_client_span(span, status, exc)
                raise
            _otel.end_client_span(span, 200, None)
    except Exception as exc:
        if metrics is not None:
            label = str(exc.code) if isinstance(exc, ServiceError) else type(exc).__name__
            metrics.rpc_called(call.service, call.endpoint, label, time.perf_counter() - start)
        raise
    if metrics is not None:
        metrics.rpc_called(call.service, call.endpoint, "200", time.perf_counter() - start)
    return result


def inject(headers: dict[str, str]) -> None:
    """Put the current trace context into a request's headers (tracing on only)."""
    from microstd.observe import _otel

    _otel.inject(headers)


def note_attempt(address: str, node_id: str, local: bool) -> None:
    """The node an attempt goes to, on the call's span (the last attempt's wins)."""
    from microstd.observe import _otel

    host, _, port = address.rpartition(":")
    attributes: dict[str, Any] = {"microstd.node": node_id, "microstd.rpc.in_process": local}
    if host:
        attributes["server.address"] = host
        if port.isdigit():
            attributes["server.port"] = int(port)
    _otel.set_attributes(attributes)


def note_retry(attempt: int, node_id: str, reason: BaseException) -> None:
    """A failed attempt that will be retried, as an event on the call's span."""
    from microstd.observe import _otel

    _otel.span_event(
        "retry",
        {
            "microstd.rpc.attempt": attempt + 1,
            "microstd.node": node_id,
            "microstd.rpc.retry_reason": f"{type(reason).__name__}: {reason}"[:200],
        },
    )
    _otel.set_attributes({"microstd.rpc.attempts": attempt + 2})


def note_failure(exc: BaseException) -> None:
    """A handler's exception, recorded on the request's span (its reply says the rest)."""
    from microstd.observe import _otel

    _otel.record_exception(exc)


async def serve_stream(
    service: str, node: str, endpoint: str, headers: Mapping[str, str], work: Awaitable[None]
) -> None:
    """Serve one streaming call inside a SERVER span (tracing on only): its tasks copy
    the context, so the handler's own spans and calls are children."""
    tracer = state.tracer
    if tracer is None:
        await work
        return
    from microstd.observe import _otel

    span = _otel.stream_server_span(tracer, service, node, endpoint, headers)
    await _otel.awaited(span, work)


async def traced_stream(
    replies: AsyncIterator[Any], call: Call, default_timeout: float | None
) -> AsyncIterator[Any]:
    """A client's reply stream inside a CLIENT span (tracing on only).

    The span is current while the stream works (connecting, sending its headers
    with the span's context, receiving), never while the caller holds an item.
    """
    tracer = state.tracer
    if tracer is None:
        async for item in replies:
            yield item
        return
    from microstd.observe import _otel

    timeout = call.timeout if call.timeout is not None else default_timeout
    span = _otel.client_span(tracer, call.service, call.endpoint, timeout)
    span.set_attribute("microstd.rpc.streaming", True)
    items = 0
    failure: BaseException | None = None
    step = replies.__anext__
    try:
        while True:
            with _otel.use(span):
                try:
                    item = await step()
                except StopAsyncIteration:
                    break
            items += 1
            yield item
    except GeneratorExit:
        raise  # the caller closed the stream early: not an error
    except BaseException as exc:
        failure = exc
        raise
    finally:
        with _otel.use(span):
            await replies.aclose()  # type: ignore[attr-defined]
        span.set_attribute("microstd.rpc.stream.items", items)
        status = failure.code if isinstance(failure, ServiceError) else None
        _otel.end_client_span(span, status if failure else 200, failure)


def carried(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """`coro`, to run on another thread's loop under this thread's trace context
    (a `SyncClient` call made inside a span continues its trace)."""
    from opentelemetry import context

    current = context.get_current()

    async def run() -> T:
        token = context.attach(current)
        try:
            return await coro
        finally:
            context.detach(token)

    return run()
