"""Store, lock, registry and broker metrics through the OpenTelemetry metrics API
(an SDK `MeterProvider` with an in-memory reader), and the backends' spans."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from microstd.errors import LockLost, LockTimeout, NotFound
from microstd.observe import configure
from microstd.registry import Node
from microstd.registry import ServiceRecord as Record


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    configure(metrics=True, meter_provider=provider)
    yield reader
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    """`name`'s data points by their sorted attributes (sums, or histogram counts)."""
    out: dict[tuple[tuple[str, Any], ...], Any] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = tuple(sorted(point.attributes.items()))
                    out[key] = getattr(point, "value", None)
                    if out[key] is None:
                        out[key] = point.count
    return out


async def test_store_operations_are_counted_and_timed(reader: InMemoryMetricReader) -> None:
    async with microstd.store.open("memory://") as store:
        await store.write("a", 1)
        await store.read("a")
        with pytest.raises(NotFound):
            await store.read("missing")
    ops = points(reader, "microstd.store.operations")
    assert ops[(("backend", "memory"), ("operation", "write"), ("outcome", "ok"))] == 1
    assert ops[(("backend", "memory"), ("operation", "read"), ("outcome", "ok"))] == 1
    assert ops[(("backend", "memory"), ("operation", "read"), ("outcome", "NotFound"))] == 1
    durations = points(reader, "microstd.store.duration")
    assert durations[(("backend", "memory"), ("operation", "read"))] == 2


async def test_lock_acquisitions_waits_and_losses(reader: InMemoryMetricReader) -> None:
    async with microstd.sync.open("memory://") as locks:
        lease = await locks.acquire("job", ttl=10)
        with pytest.raises(LockTimeout):
            await locks.acquire("job", ttl=10, wait=0)
        await lease.release()
        with pytest.raises(LockLost):
            await lease.release()  # no longer held
        async with locks.lock("job", ttl=10):
            pass
    acquisitions = points(reader, "microstd.lock.acquisitions")
    assert acquisitions[(("backend", "memory"), ("outcome", "acquired"))] == 2
    assert acquisitions[(("backend", "memory"), ("outcome", "timeout"))] == 1
    assert points(reader, "microstd.lock.wait")[(("backend", "memory"),)] == 3
    assert points(reader, "microstd.lock.losses")[(("backend", "memory"),)] == 1


async def test_broker_deliveries_failures_redeliveries_and_dead_letters(
    reader: InMemoryMetricReader,
) -> None:
    url = f"memory://m{uuid.uuid4().hex}"
    seen: list[int] = []

    async def handler(msg: microstd.broker.Message) -> None:
        seen.append(msg.delivery_count)
        raise RuntimeError("always fails")

    async with microstd.broker.open(url) as broker:
        broker.on_error(lambda exc, sub: None)
        sub = await broker.subscribe(
            "jobs.*", handler, durable="jobs", max_deliver=2, backoff=[0.01]
        )
        await broker.publish("jobs.run", b"x")
        deadline = time.monotonic() + 20
        while not points(reader, "microstd.broker.dead_lettered"):
            assert time.monotonic() < deadline, "never dead-lettered"
            await asyncio.sleep(0.01)
        await sub.unsubscribe()
    labels = (("pattern", "jobs.*"), ("system", "memory"))
    assert seen == [1, 2]
    assert (
        points(reader, "microstd.broker.published")[(("system", "memory"), ("topic", "jobs.run"))]
        == 1
    )
    assert points(reader, "microstd.broker.delivered")[labels] == 2
    assert points(reader, "microstd.broker.failed")[labels] == 2
    assert points(reader, "microstd.broker.redelivered")[labels] == 1
    assert points(reader, "microstd.broker.dead_lettered")[(("durable", "jobs"),)] == 1


async def test_backend_spans_and_switching_them_off(spans: Any) -> None:
    async with (
        microstd.store.open("memory://") as store,
        microstd.registry.open("memory://") as reg,
    ):
        await store.write("k", "v")
        await reg.register(Record("svc", "", [Node("n1", "127.0.0.1:1")]), ttl=5)
    names = {(s.name, s.kind) for s in spans.get_finished_spans()}
    assert ("store write", SpanKind.CLIENT) in names
    assert ("registry register", SpanKind.CLIENT) in names
    [write] = [s for s in spans.get_finished_spans() if s.name == "store write"]
    assert write.attributes["db.system.name"] == "memory"
    assert write.attributes["db.operation.name"] == "write"
    assert write.attributes["microstd.store.name"] == "k"
    spans.clear()
    configure(backend_spans=False)
    async with microstd.store.open("memory://") as store, microstd.broker.open("memory://") as b:
        await store.write("k", "v")
        await b.publish("a.b", b"x")
    # Store spans are off; broker spans stay.
    assert [s.name for s in spans.get_finished_spans()] == ["publish a.b"]


async def test_a_lost_leadership_counts_and_a_resigned_one_does_not(
    reader: InMemoryMetricReader, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    name = f"lead{uuid.uuid4().hex[:8]}"
    async with microstd.sync.open(redis_url) as locks:
        kept = await locks.elect(f"{name}-kept", candidate="a", ttl=5)
        await kept.resign()
        leadership = await locks.elect(name, candidate="a", ttl=0.6)
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.delete(f"microstd:election:{name}")
        finally:
            await client.aclose()
        await asyncio.wait_for(leadership.lost.wait(), 5.0)
        deadline = time.monotonic() + 10
        while not points(reader, "microstd.lock.losses"):
            assert time.monotonic() < deadline, "the loss was never counted"
            await asyncio.sleep(0.01)
        await leadership.resign()
    assert points(reader, "microstd.lock.losses") == {(("backend", "redis"),): 1}
