"""Whether traces and metrics are on: the one object every hot path looks at.

Hot paths (an RPC call, a request, a publish) read `state.on` (or
`state.tracer`, `state.metrics`) and take their plain path when it is false:
one attribute read when nothing is configured.

Tracing is on once an OpenTelemetry tracer provider is known: one given to
`configure(tracer_provider=...)`, or the global one an application set with
`opentelemetry.trace.set_tracer_provider` (an SDK's). The global provider is
looked for by `refresh()`, which runs where it costs nothing per call: when a
`Service` starts, a `Client` is made, a backend is opened, and in
`configure()`. It never imports OpenTelemetry itself: an application that
configured an SDK has imported `opentelemetry.trace` already, so a process
that has not cannot have a provider to find.

Metrics are off until `configure(metrics=True)` (or `Service(metrics=True)`,
or `MICROSTD_METRICS=1`) turns them on.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from microstd.observe.metrics import Metrics

__all__ = ["INSTRUMENTATION", "State", "configure", "refresh", "state"]

#: The instrumentation scope name of every tracer and meter microstd uses.
INSTRUMENTATION = "microstd"

_ENV_METRICS = "MICROSTD_METRICS"
_ENV_BACKEND_SPANS = "MICROSTD_OTEL_BACKEND_SPANS"
_FALSE = {"0", "false", "no", "off", ""}


class State:
    """Process-wide observability switches (one instance: `state`)."""

    __slots__ = ("backend_spans", "metrics", "on", "tracer", "tracer_provider", "tracing")

    def __init__(self) -> None:
        #: The tracer while tracing is on, else None.
        self.tracer: Any = None
        #: The instruments while metrics are on, else None.
        self.metrics: Metrics | None = None
        #: `tracer is not None or metrics is not None`: the hot paths' one check.
        self.on = False
        #: Spans for store, locks and registry operations (RPC and broker spans
        #: are always made while tracing is on).
        self.backend_spans = os.environ.get(_ENV_BACKEND_SPANS, "1").lower() not in _FALSE
        #: A provider given to `configure()`; None: the global one.
        self.tracer_provider: Any = None
        #: False after `configure(tracing=False)`.
        self.tracing = True

    def _update(self) -> None:
        self.on = self.tracer is not None or self.metrics is not None


state = State()


def _global_provider() -> Any:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None  # not imported: nobody configured an SDK
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider


def refresh() -> bool:
    """Look again for a tracer provider (see the module docstring); True if tracing is on."""
    if state.tracer is None and state.tracing:
        provider = state.tracer_provider or _global_provider()
        if provider is not None:
            from microstd import __version__

            state.tracer = provider.get_tracer(INSTRUMENTATION, __version__)
            state._update()
    if state.metrics is None and os.environ.get(_ENV_METRICS, "").lower() not in _FALSE:
        configure(metrics=True)
    return state.tracer is not None


def configure(
    *,
    tracing: bool | None = None,
    tracer_provider: Any = None,
    metrics: bool | None = None,
    meter_provider: Any = None,
    backend_spans: bool | None = None,
) -> None:
    """Turn traces and metrics on or off for this process.

    - `tracer_provider`: trace with this OpenTelemetry `TracerProvider` instead
      of the global one (tests, or an application keeping several).
    - `tracing=False` stops making spans (even with an SDK configured);
      `tracing=True` looks for a provider again.
    - `metrics=True` records the RPC, broker, lock, store and registry metrics
      (through the OpenTelemetry metrics API, and into prometheus-client's
      registry when it is installed); `metrics=False` stops recording.
      `meter_provider` records into that provider instead of the global one.
    - `backend_spans=False` leaves out the spans of store, lock and registry
      operations (RPC and broker spans stay).

    Backends opened before a change keep the instrumentation they were opened
    with; RPC calls follow every change at once.
    """
    if backend_spans is not None:
        state.backend_spans = bool(backend_spans)
    if tracer_provider is not None:
        state.tracer_provider = tracer_provider
        state.tracer = None
        state.tracing = True
    if tracing is not None:
        state.tracing = bool(tracing)
        state.tracer = None
    if metrics is True or (meter_provider is not None and metrics is None):
        from microstd.observe.metrics import Metrics

        current = state.metrics
        if current is None or (
            meter_provider is not None and current.provider is not meter_provider
        ):
            state.metrics = Metrics(meter_provider)
    elif metrics is False:
        state.metrics = None
    state._update()
    if state.tracing:
        refresh()


def reset() -> None:
    """Back to the start: no tracer, no metrics, the global provider (for tests)."""
    state.tracer = None
    state.tracer_provider = None
    state.tracing = True
    state.metrics = None
    state.backend_spans = True
    state._update()
