"""PostgreSQL store benchmarks under pytest-benchmark: the `microstd bench postgres` cases,
on a private PostgreSQL and Redis.

Run `pytest benches/bench_postgres.py --benchmark-group-by=param:case` for the
pytest-benchmark view, or `pytest benches/bench_postgres.py -s -k ratio` for the
table of one run: microstd's postgresql:// store against asyncpg running the same
SQL by hand (the ratio the issue asks for) and the redis:// store for scale.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microstd.bench.postgres import cases
from microstd.bench.report import cases_of, format_area
from microstd.bench.runner import measure_group

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _servers import postgres_server, redis_server


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    pg = postgres_server()
    redis = redis_server()
    pg.start()
    try:
        redis.start()
        try:
            yield (
                f"postgresql://postgres@127.0.0.1:{pg.port}/postgres",
                f"redis://127.0.0.1:{redis.port}/0",
            )
        finally:
            redis.close()
    finally:
        pg.close()


@pytest.fixture(scope="module")
def all_cases(urls: tuple[str, str]) -> Iterator[list[Any]]:
    found = cases(quick=True, postgres_url=urls[0], redis_url=urls[1])
    yield found
    last = found[-1]
    if last.teardown is not None:
        last.teardown()


@pytest.mark.parametrize("index", range(16))
def test_postgres_case(benchmark: Any, all_cases: list[Any], index: int) -> None:
    case = all_cases[index]
    case.setup()
    result = case.fn()
    assert case.check(result)
    benchmark.group = case.group
    benchmark.extra_info["impl"] = case.impl
    benchmark(case.fn)


def test_postgres_ratio_report(request: pytest.FixtureRequest, urls: tuple[str, str]) -> None:
    """Every case measured in one run (rows of a case interleaved); prints the table."""
    quick = bool(request.config.getoption("benchmark_disable", default=False))
    found = cases(quick=quick, postgres_url=urls[0], redis_url=urls[1])
    results = []
    groups: dict[str, list[Any]] = {}
    for case in found:
        groups.setdefault(case.group, []).append(case)
    for group in groups.values():
        results += measure_group(group, seconds=0.05 if quick else 4.0, rounds=2 if quick else 20)
    print()
    print(format_area(cases_of(results)))
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
