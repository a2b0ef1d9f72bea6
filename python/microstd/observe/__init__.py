"""Observability: OpenTelemetry traces and metrics, Prometheus text, health, logs.

    pip install 'microstd[otel]'         # the OpenTelemetry API (traces, metrics)
    pip install 'microstd[prometheus]'   # prometheus-client, for /metrics

Traces. Once the application configures an OpenTelemetry SDK (a tracer
provider), every RPC call gets a CLIENT span and every request a SERVER span,
linked through W3C `traceparent` / `tracestate` headers; every publish a
PRODUCER span and every delivery a CONSUMER span, linked through the
message's headers; store, lock and registry operations get spans too
(`configure(backend_spans=False)` leaves those out). Without an SDK nothing
is made: the hot paths read one attribute.

Metrics. `configure(metrics=True)`, `Service(metrics=True)` or
`MICROSTD_METRICS=1` record the instruments listed in `INSTRUMENTS` through
the OpenTelemetry metrics API and into prometheus-client's registry, which a
`Service(metrics=True)` serves at `/metrics`.

Health and logs: `Health` (the `/health/ready` checks) and
`configure_logging` (what `microstd run` sets up). See docs/observability.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from microstd.observe._state import INSTRUMENTATION, configure, refresh, state

# The rest loads on first use: the RPC server imports this package, and the
# log filter imports the RPC context.
_LAZY = {
    "Health": "microstd.observe.health",
    "ContextFilter": "microstd.observe.logs",
    "JsonFormatter": "microstd.observe.logs",
    "TextFormatter": "microstd.observe.logs",
    "configure_logging": "microstd.observe.logs",
    "INSTRUMENTS": "microstd.observe.metrics",
    "Instrument": "microstd.observe.metrics",
}

if TYPE_CHECKING:
    from microstd.observe.health import Health
    from microstd.observe.logs import (
        ContextFilter,
        JsonFormatter,
        TextFormatter,
        configure_logging,
    )
    from microstd.observe.metrics import INSTRUMENTS, Instrument

__all__ = [
    "INSTRUMENTATION",
    "INSTRUMENTS",
    "ContextFilter",
    "Health",
    "Instrument",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "configure_logging",
    "refresh",
    "state",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'microstd.observe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
