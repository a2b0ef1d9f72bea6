"""The metrics microstd records, into two sinks at once.

Every instrument is defined once (`INSTRUMENTS`) and recorded
- through the OpenTelemetry metrics API (when `opentelemetry-api` is
  installed): the global meter provider, or the one given to
  `microstd.observe.configure(meter_provider=...)`; without an SDK the API
  drops them;
- into prometheus-client's default registry (when `prometheus-client` is
  installed), which `Service(metrics=True)` serves as `/metrics`.

Labels are kept to bounded sets: no lock names or store keys. Topics are
labels; a service publishing to unboundedly many topics should say so to its
Prometheus (or not turn metrics on).

Gauges (requests in flight, queue depths) are read when scraped, from the
objects that hold them (`watch_gauge`), so nothing is counted twice or left
behind.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["INSTRUMENTS", "Instrument", "Metrics"]

#: Seconds: the buckets of every duration histogram (RPC calls, store operations, lock waits).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Instrument:
    """One metric: its OpenTelemetry name, kind, labels and meaning.

    The Prometheus name is the OpenTelemetry one with dots as underscores,
    and `_seconds` for durations (counters get prometheus-client's `_total`,
    histograms `_bucket`, `_sum`, `_count`).
    """

    name: str
    kind: str  # "counter", "histogram", "gauge"
    labels: tuple[str, ...]
    description: str
    unit: str = ""

    @property
    def prometheus_name(self) -> str:
        base = self.name.replace(".", "_")
        return base + "_seconds" if self.unit == "s" else base


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        "microstd.rpc.server.requests",
        "counter",
        ("service", "endpoint", "status"),
        "RPC requests handled, by reply status",
    ),
    Instrument(
        "microstd.rpc.server.duration",
        "histogram",
        ("service", "endpoint", "status"),
        "Seconds from admitting a request to its reply",
        "s",
    ),
    Instrument(
        "microstd.rpc.server.inflight",
        "gauge",
        ("service",),
        "Requests and messages being handled now",
    ),
    Instrument(
        "microstd.rpc.client.calls",
        "counter",
        ("service", "endpoint", "status"),
        "RPC calls made, by outcome (a status, or the exception's name)",
    ),
    Instrument(
        "microstd.rpc.client.duration",
        "histogram",
        ("service", "endpoint", "status"),
        "Seconds per RPC call, retries included",
        "s",
    ),
    Instrument("microstd.broker.published", "counter", ("system", "topic"), "Messages published"),
    Instrument(
        "microstd.broker.delivered",
        "counter",
        ("system", "pattern"),
        "Messages handed to a subscription's handler",
    ),
    Instrument(
        "microstd.broker.failed",
        "counter",
        ("system", "pattern"),
        "Deliveries whose handler raised",
    ),
    Instrument(
        "microstd.broker.redelivered",
        "counter",
        ("system", "pattern"),
        "Deliveries of a durable message seen before (delivery count above 1)",
    ),
    Instrument(
        "microstd.broker.dead_lettered",
        "counter",
        ("durable",),
        "Durable messages given up on (sent to the dead-letter topic, or dropped)",
    ),
    Instrument(
        "microstd.broker.queue_depth",
        "gauge",
        ("system", "pattern"),
        "Messages waiting in a subscription's queue",
    ),
    Instrument(
        "microstd.lock.acquisitions",
        "counter",
        ("backend", "outcome"),
        "Lock acquisitions, by outcome (acquired, timeout, error)",
    ),
    Instrument(
        "microstd.lock.wait",
        "histogram",
        ("backend",),
        "Seconds spent waiting to acquire a lock",
        "s",
    ),
    Instrument(
        "microstd.lock.losses",
        "counter",
        ("backend",),
        "Leases found lost on refresh or release, and leaderships lost",
    ),
    Instrument(
        "microstd.store.operations",
        "counter",
        ("backend", "operation", "outcome"),
        "Store operations, by outcome (ok, or the exception's name)",
    ),
    Instrument(
        "microstd.store.duration",
        "histogram",
        ("backend", "operation"),
        "Seconds per store operation",
        "s",
    ),
    Instrument(
        "microstd.registry.heartbeats",
        "counter",
        ("service", "outcome"),
        "Registrations and re-registrations of a Service's node (ok, failed)",
    ),
)

_BY_NAME = {i.name: i for i in INSTRUMENTS}

#: Gauge name -> objects to read at scrape time, each with a function giving
#: `(labels, value)` pairs. Weak: a stopped server or closed subscription drops out.
_Reader = Callable[[Any], Iterable[tuple[tuple[str, ...], float]]]


#: prometheus-client's collectors, made once per process: its registry is process-wide
#: and refuses a name registered twice, so a second `Metrics` reuses them.
_prometheus: dict[str, Any] = {}
_prometheus_lock = threading.Lock()


class Metrics:
    """The live instruments of both sinks; one per process while metrics are on."""

    def __init__(self, meter_provider: Any = None) -> None:
        self.provider = meter_provider
        self._watched: dict[str, weakref.WeakKeyDictionary[Any, _Reader]] = {
            i.name: weakref.WeakKeyDictionary() for i in INSTRUMENTS if i.kind == "gauge"
        }
        self._otel = self._make_otel(meter_provider)
        self._prom = self._make_prometheus()
        self._children: dict[tuple[str, tuple[str, ...]], tuple[Any, dict[str, str], Any]] = {}

    # --- sinks ----------------------------------------------------------------

    def _make_otel(self, provider: Any) -> dict[str, Any]:
        try:
            from opentelemetry import metrics as otel_metrics
        except ImportError:
            return {}
        from microstd import __version__
        from microstd.observe._state import INSTRUMENTATION

        meter = (provider or otel_metrics.get_meter_provider()).get_meter(
            INSTRUMENTATION, __version__
        )
        made: dict[str, Any] = {}
        for inst in INSTRUMENTS:
            if inst.kind == "counter":
                made[inst.name] = meter.create_counter(inst.name, inst.unit, inst.description)
            elif inst.kind == "histogram":
                made[inst.name] = meter.create_histogram(
                    inst.name,
                    inst.unit,
                    inst.description,
                    explicit_bucket_boundaries_advisory=list(BUCKETS),
                )
            else:
                made[inst.name] = meter.create_observable_gauge(
                    inst.name, [self._otel_callback(inst)], inst.unit, inst.description
                )
        return made

    def _otel_callback(self, inst: Instrument) -> Callable[[Any], Iterable[Any]]:
        from opentelemetry.metrics import Observation

        def observe(options: Any) -> Iterable[Any]:
            return [
                Observation(value, dict(zip(inst.labels, labels, strict=True)))
                for labels, value in self.gauge_values(inst.name)
            ]

        return observe

    def _make_prometheus(self) -> dict[str, Any]:
        try:
            import prometheus_client
        except ImportError:
            return {}
        with _prometheus_lock:
            made = _prometheus
            if not made:
                for inst in INSTRUMENTS:
                    if inst.kind == "counter":
                        made[inst.name] = prometheus_client.Counter(
                            inst.prometheus_name, inst.description, inst.labels
                        )
                    elif inst.kind == "histogram":
                        made[inst.name] = prometheus_client.Histogram(
                            inst.prometheus_name, inst.description, inst.labels, buckets=BUCKETS
                        )
                prometheus_client.REGISTRY.register(_GaugeCollector())
            return made

    # --- recording ------------------------------------------------------------

    def _child(self, name: str, labels: tuple[str, ...]) -> tuple[Any, dict[str, str], Any]:
        # Per label set, once: the OpenTelemetry attributes and prometheus-client's
        # child (its `labels()` lookup was most of a recording's cost).
        key = (name, labels)
        found = self._children.get(key)
        if found is None:
            attributes = dict(zip(_BY_NAME[name].labels, labels, strict=True))
            prom = self._prom.get(name)
            child = prom.labels(*labels) if prom is not None else None
            found = self._children[key] = (self._otel.get(name), attributes, child)
        return found

    def add(self, name: str, labels: tuple[str, ...], amount: float = 1) -> None:
        """Add to counter `name`."""
        otel, attributes, prom = self._child(name, labels)
        if otel is not None:
            otel.add(amount, attributes)
        if prom is not None:
            prom.inc(amount)

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Record `value` in histogram `name`."""
        otel, attributes, prom = self._child(name, labels)
        if otel is not None:
            otel.record(value, attributes)
        if prom is not None:
            prom.observe(value)

    def watch_gauge(self, name: str, owner: Any, read: _Reader) -> None:
        """Report `read(owner)` as gauge `name` at each scrape while `owner` lives."""
        self._watched[name][owner] = read

    def gauge_values(self, name: str) -> list[tuple[tuple[str, ...], float]]:
        """The current values of gauge `name`, summed per label set."""
        totals: dict[tuple[str, ...], float] = {}
        for owner, read in list(self._watched[name].items()):
            for labels, value in read(owner):
                totals[labels] = totals.get(labels, 0.0) + value
        return sorted(totals.items())

    # --- the areas' shorthands -----------------------------------------------------

    def rpc_served(self, service: str, endpoint: str, status: int, seconds: float) -> None:
        labels = (service, endpoint, str(status))
        self.add("microstd.rpc.server.requests", labels)
        self.observe("microstd.rpc.server.duration", labels, seconds)

    def rpc_called(self, service: str, endpoint: str, status: str, seconds: float) -> None:
        labels = (service, endpoint, status)
        self.add("microstd.rpc.client.calls", labels)
        self.observe("microstd.rpc.client.duration", labels, seconds)


class _GaugeCollector:
    """Reads the watched gauges at scrape time (prometheus-client's custom collector)."""

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from microstd.observe._state import state

        metrics = state.metrics
        for inst in INSTRUMENTS:
            if inst.kind != "gauge":
                continue
            family = GaugeMetricFamily(inst.prometheus_name, inst.description, labels=inst.labels)
            if metrics is not None:
                for labels, value in metrics.gauge_values(inst.name):
                    family.add_metric(list(labels), value)
            yield family

    def describe(self) -> Iterable[Any]:
        return []


def prometheus_text() -> tuple[bytes, str]:
    """The default registry in the Prometheus text format, and its content type."""
    import prometheus_client

    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
