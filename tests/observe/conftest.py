"""Fixtures: an OpenTelemetry SDK with an in-memory exporter, and clean switches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microstd.observe import _state


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on for this test, into an in-memory exporter (`spans.get_finished_spans()`)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _state.configure(tracer_provider=provider)
    try:
        yield exporter
    finally:
        _state.reset()
        provider.shutdown()


@pytest.fixture(autouse=True)
def _switches_reset() -> Iterator[None]:
    yield
    _state.reset()
