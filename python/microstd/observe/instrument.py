"""Spans and metrics for the areas' backends, added where every backend is opened.

`microstd.<area>.open(url)` (and `open_sync`) passes what it opened through
`instrument(area, scheme, obj)` while tracing or metrics are on. That wraps
the object's own methods, on that object only: backends are written without
any observability code, a backend opened while nothing is on pays nothing,
and one opened while something is on is observed for its whole life.

- broker: `publish` makes a PRODUCER span and puts its context in the
  message's headers (`traceparent`, `tracestate`), on every backend, core and
  durable; `subscribe` wraps the handler so each delivery runs in a CONSUMER
  span whose parent is the publisher's. Metrics: published, delivered,
  failed, redelivered (a durable delivery count above 1), queue depth;
  dead letters are counted where durable subscriptions settle
  (`broker/_durable_delivery.py`).
- store, locks, registry: a CLIENT span per operation (unless
  `configure(backend_spans=False)`), store operation counts and latency,
  lock acquisitions, waits and losses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from microstd.errors import LockLost, LockTimeout
from microstd.observe._state import state

__all__ = ["count_dead_letter", "instrument"]

#: Store methods observed: each is one round trip (watch is a stream: not wrapped).
_STORE_OPS = ("read", "read_many", "write", "write_many", "delete", "delete_many", "list", "exists")
_REGISTRY_OPS = ("register", "deregister", "lookup", "list_services")
_LOCK_OPS = ("leader", "elect")


def instrument(area: str, scheme: str, obj: Any) -> Any:
    """Observe `obj`, a backend of `area` opened from a `scheme://` URL; returns it."""
    if getattr(obj, "_microstd_observed", False):
        return obj
    if area == "broker":
        _broker(obj, scheme)
    elif area == "store":
        for op in _STORE_OPS:
            _operation(obj, op, "store", scheme, _store_done)
    elif area == "registry":
        for op in _REGISTRY_OPS:
            _operation(obj, op, "registry", scheme, None)
    elif area == "sync":
        for op in _LOCK_OPS:
            _operation(obj, op, "locks", scheme, None)
        _acquire(obj, scheme)
        _elect(obj, scheme)
    else:
        return obj
    with contextlib.suppress(AttributeError):  # no __dict__: never wrapped twice anyway
        obj._microstd_observed = True
    return obj


# --- broker ---------------------------------------------------------------------


def _broker(broker: Any, system: str) -> None:
    publish = broker.publish
    subscribe = broker.subscribe
    if inspect.iscoroutinefunction(publish):

        @functools.wraps(publish)
        async def apublish(
            topic: str, body: object, headers: Any = None, content_type: str | None = None
        ) -> None:
            tracer = state.tracer
            if tracer is None:
                await publish(topic, body, headers, content_type)
            else:
                from microstd.observe import _otel

                span = _otel.publish_span(tracer, system, topic)
                with _otel.use(span):
                    carried = dict(headers) if headers else {}
                    _otel.inject(carried)
                    try:
                        await publish(topic, body, carried, content_type)
                    except BaseException as exc:
                        _otel.end_span(span, exc)
                        raise
                span.end()
            _published(system, topic)

        @functools.wraps(subscribe)
        async def asubscribe(
            pattern: str, handler: Any, queue: str | None = None, **kw: Any
        ) -> Any:
            group = kw.get("durable") or queue
            sub = await subscribe(pattern, _handler(handler, system, pattern, group), queue, **kw)
            _watch_queue(sub, system, pattern)
            return sub

        broker.publish = apublish
        broker.subscribe = asubscribe
    else:

        @functools.wraps(publish)
        def spublish(
            topic: str, body: object, headers: Any = None, content_type: str | None = None
        ) -> None:
            tracer = state.tracer
            if tracer is None:
                publish(topic, body, headers, content_type)
            else:
                from microstd.observe import _otel

                span = _otel.publish_span(tracer, system, topic)
                with _otel.use(span):
                    carried = dict(headers) if headers else {}
                    _otel.inject(carried)
                    try:
                        publish(topic, body, carried, content_type)
                    except BaseException as exc:
                        _otel.end_span(span, exc)
                        raise
                span.end()
            _published(system, topic)

        @functools.wraps(subscribe)
        def ssubscribe(pattern: str, handler: Any, queue: str | None = None, **kw: Any) -> Any:
            group = kw.get("durable") or queue
            sub = subscribe(pattern, _handler(handler, system, pattern, group), queue, **kw)
            _watch_queue(sub, system, pattern)
            return sub

        broker.publish = spublish
        broker.subscribe = ssubscribe


def _published(system: str, topic: str) -> None:
    metrics = state.metrics
    if metrics is not None:
        metrics.add("microstd.broker.published", (system, topic))


def _delivered(system: str, pattern: str, message: Any, failed: bool) -> None:
    metrics = state.metrics
    if metrics is None:
        return
    labels = (system, pattern)
    metrics.add("microstd.broker.delivered", labels)
    if message.delivery_count > 1:
        metrics.add("microstd.broker.redelivered", labels)
    if failed:
        metrics.add("microstd.broker.failed", labels)


def _handler(handler: Any, system: str, pattern: str, group: str | None) -> Any:
    """`handler` run in a CONSUMER span per message, counted; sync stays sync."""
    if inspect.iscoroutinefunction(handler):

        async def ahandle(message: Any) -> None:
            tracer = state.tracer
            if tracer is None:
                try:
                    await handler(message)
                except BaseException:
                    _delivered(system, pattern, message, True)
                    raise
                _delivered(system, pattern, message, False)
                return
            from microstd.observe import _otel

            span = _otel.process_span(tracer, system, pattern, group, message)
            with _otel.use(span):
                try:
                    await handler(message)
                except BaseException as exc:
                    _otel.end_span(span, exc)
                    _delivered(system, pattern, message, True)
                    raise
            span.end()
            _delivered(system, pattern, message, False)

        return functools.wraps(handler)(ahandle)

    def shandle(message: Any) -> Any:
        tracer = state.tracer
        span = None
        if tracer is not None:
            from microstd.observe import _otel

            span = _otel.process_span(tracer, system, pattern, group, message)
        try:
            if span is None:
                result = handler(message)
            else:
                with _otel.use(span):
                    result = handler(message)
        except BaseException as exc:
            if span is not None:
                _otel.end_span(span, exc)
            _delivered(system, pattern, message, True)
            raise
        if span is not None:
            span.end()
        _delivered(system, pattern, message, False)
        return result

    return functools.wraps(handler)(shandle) if callable(handler) else handler


def _watch_queue(sub: Any, system: str, pattern: str) -> None:
    metrics = state.metrics
    if metrics is None:
        return

    def depth(sub: Any) -> list[tuple[tuple[str, ...], float]]:
        delivery = getattr(sub, "delivery", None) or getattr(
            getattr(sub, "_sub", None), "delivery", None
        )
        queue = getattr(delivery, "queue", None)
        try:
            return [((system, pattern), float(len(queue)))] if queue is not None else []
        except TypeError:
            return []

    # A subscription object that cannot be weakly referenced has no gauge.
    with contextlib.suppress(TypeError):
        metrics.watch_gauge("microstd.broker.queue_depth", sub, depth)


def count_dead_letter(durable: str) -> None:
    """One durable message given up on (called by the durable subscriptions' settler)."""
    metrics = state.metrics
    if metrics is not None:
        metrics.add("microstd.broker.dead_lettered", (durable,))


# --- store, locks, registry ------------------------------------------------------

_Done = Callable[[str, str, float, "BaseException | None"], None]


def _store_done(backend: str, op: str, seconds: float, exc: BaseException | None) -> None:
    metrics = state.metrics
    if metrics is not None:
        outcome = "ok" if exc is None else type(exc).__name__
        metrics.add("microstd.store.operations", (backend, op, outcome))
        metrics.observe("microstd.store.duration", (backend, op), seconds)


def _attributes(area: str, system: str, op: str, args: tuple[Any, ...]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "db.system.name": system,
        "db.operation.name": op,
        "microstd.area": area,
    }
    if args and isinstance(args[0], str):
        # A key, lock or service name: what the operation is about (never a value).
        attributes[f"microstd.{area}.name"] = args[0]
    return attributes


def _operation(obj: Any, op: str, area: str, system: str, done: _Done | None) -> None:
    method = getattr(obj, op, None)
    if method is None:
        return
    name = f"{area} {op}"
    if inspect.iscoroutinefunction(method):

        async def arun(*args: Any, **kw: Any) -> Any:
            tracer = state.tracer if state.backend_spans else None
            start = time.perf_counter()
            span = None
            if tracer is not None:
                from microstd.observe import _otel

                span = _otel.internal_span(tracer, name, _attributes(area, system, op, args))
            try:
                if span is None:
                    result = await method(*args, **kw)
                else:
                    with _otel.use(span):
                        result = await method(*args, **kw)
            except BaseException as exc:
                if span is not None:
                    _otel.end_span(span, exc)
                if done is not None:
                    done(system, op, time.perf_counter() - start, exc)
                raise
            if span is not None:
                span.end()
            if done is not None:
                done(system, op, time.perf_counter() - start, None)
            return result

        setattr(obj, op, functools.wraps(method)(arun))
    else:

        def srun(*args: Any, **kw: Any) -> Any:
            tracer = state.tracer if state.backend_spans else None
            start = time.perf_counter()
            span = None
            if tracer is not None:
                from microstd.observe import _otel

                span = _otel.internal_span(tracer, name, _attributes(area, system, op, args))
            try:
                if span is None:
                    result = method(*args, **kw)
                else:
                    with _otel.use(span):
                        result = method(*args, **kw)
            except BaseException as exc:
                if span is not None:
                    _otel.end_span(span, exc)
                if done is not None:
                    done(system, op, time.perf_counter() - start, exc)
                raise
            if span is not None:
                span.end()
            if done is not None:
                done(system, op, time.perf_counter() - start, None)
            return result

        setattr(obj, op, functools.wraps(method)(srun))


def _acquired(backend: str, seconds: float, exc: BaseException | None) -> None:
    metrics = state.metrics
    if metrics is None:
        return
    if exc is None:
        outcome = "acquired"
    elif isinstance(exc, LockTimeout):
        outcome = "timeout"
    else:
        outcome = "error"
    metrics.add("microstd.lock.acquisitions", (backend, outcome))
    metrics.observe("microstd.lock.wait", (backend,), seconds)


def _acquire(locks: Any, system: str) -> None:
    """`acquire` (which `lock()` goes through) as an operation, with lock metrics; the
    leases it returns count a `LockLost` on refresh or release as a loss."""
    _operation(locks, "acquire", "locks", system, lambda b, _op, s, e: _acquired(b, s, e))
    acquire = locks.acquire
    if inspect.iscoroutinefunction(acquire):

        async def aacquire(*args: Any, **kw: Any) -> Any:
            lease = await acquire(*args, **kw)
            _watch_lease(lease, system)
            return lease

        locks.acquire = functools.wraps(acquire)(aacquire)
    else:

        def sacquire(*args: Any, **kw: Any) -> Any:
            lease = acquire(*args, **kw)
            _watch_lease(lease, system)
            return lease

        locks.acquire = functools.wraps(acquire)(sacquire)


def _elect(locks: Any, system: str) -> None:
    """Leaderships that `elect` returns count a loss when `lost` is set without a `resign()`."""
    elect = locks.elect
    if not inspect.iscoroutinefunction(elect):
        return  # the native blocking surface: its leaderships go uncounted

    async def aelect(*args: Any, **kw: Any) -> Any:
        leadership = await elect(*args, **kw)
        _watch_leadership(leadership, system)
        return leadership

    locks.elect = functools.wraps(elect)(aelect)


def _watch_leadership(leadership: Any, system: str) -> None:
    lost = getattr(leadership, "lost", None)
    resign = getattr(leadership, "resign", None)
    if lost is None or resign is None or not inspect.iscoroutinefunction(resign):
        return
    resigned = False

    async def aresign(*args: Any, **kw: Any) -> Any:
        nonlocal resigned
        resigned = True
        return await resign(*args, **kw)

    async def watch() -> None:
        await lost.wait()
        if not resigned:
            _lost(system)

    try:
        leadership.resign = functools.wraps(resign)(aresign)
    except AttributeError:
        return
    task = asyncio.ensure_future(watch())
    _watchers.add(task)
    task.add_done_callback(_watchers.discard)


#: Leadership watchers still waiting (kept so they are not collected mid-wait).
_watchers: set[asyncio.Future[None]] = set()


def _lost(system: str) -> None:
    metrics = state.metrics
    if metrics is not None:
        metrics.add("microstd.lock.losses", (system,))


def _watch_lease(lease: Any, system: str) -> None:
    for op in ("refresh", "release"):
        method = getattr(lease, op, None)
        if method is None:
            continue
        if inspect.iscoroutinefunction(method):

            async def arun(*args: Any, _m: Any = method, **kw: Any) -> Any:
                try:
                    return await _m(*args, **kw)
                except LockLost:
                    _lost(system)
                    raise

            wrapped: Any = arun
        else:

            def srun(*args: Any, _m: Any = method, **kw: Any) -> Any:
                try:
                    return _m(*args, **kw)
                except LockLost:
                    _lost(system)
                    raise

            wrapped = srun
        try:
            setattr(lease, op, functools.wraps(method)(wrapped))
        except AttributeError:
            return  # a lease without a __dict__: its losses go uncounted
