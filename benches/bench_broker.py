"""Broker benchmarks under pytest-benchmark: the `microstd bench broker` cases.

Run `pytest benches/bench_broker.py --benchmark-group-by=param:case` for the
pytest-benchmark view, or `pytest benches/bench_broker.py -s -k ratio` for
the Rust / twin ratios measured in one run (the figures in the project
notes), including nats-py publish throughput through a private nats-server
and durable messaging on private NATS, Redis and RabbitMQ servers against
their raw clients.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microstd.bench.broker import cases
from microstd.bench.report import format_table
from microstd.bench.runner import measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _servers import nats_server, rabbitmq_server, redis_server

CASES = cases(quick=True)


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    server = nats_server()
    server.start()
    try:
        yield f"nats://127.0.0.1:{server.port}"
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = redis_server()
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.close()


@pytest.fixture(scope="module")
def amqp_url() -> Iterator[str]:
    server = rabbitmq_server()
    server.start()
    try:
        yield f"amqp://guest:guest@127.0.0.1:{server.port}/"
    finally:
        server.close()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.impl}" for c in CASES])
def test_broker_case(benchmark: Any, case: Any) -> None:
    if case.setup is not None:
        case.setup()
    try:
        result = case.fn()
        if case.check is not None:
            assert case.check(result)
        benchmark.extra_info["group"] = case.group
        benchmark(case.fn)
    finally:
        if case.teardown is not None:
            case.teardown()


def test_broker_ratio_report(
    request: pytest.FixtureRequest, nats_url: str, redis_url: str, amqp_url: str
) -> None:
    """Every case measured in one run, full size; prints the table (use -s). The
    durable cases run on private nats-server, redis-server and rabbitmq-server."""
    disabled = request.config.getoption("benchmark_disable", default=False)
    quick = bool(disabled)
    results = [
        measure(c, seconds=0.02 if quick else 0.5, rounds=3 if quick else 5)
        for c in cases(quick=quick, nats_url=nats_url, redis_url=redis_url, amqp_url=amqp_url)
    ]
    print()
    print(format_table(results))
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
