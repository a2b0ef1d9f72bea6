"""Sync benchmarks under pytest-benchmark: the `microstd bench sync` cases.

Run `pytest benches/bench_sync.py --benchmark-group-by=param:group` to compare
the Rust core, its pure twin and the stdlib peers in one run; the ratios in
the project notes come from `python -m microstd bench sync`.
"""

from __future__ import annotations

from typing import Any

import pytest

from microstd.bench.sync import cases

CASES = cases(quick=True)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_sync_case(benchmark: Any, case: Any) -> None:
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


def test_uncontended_ratio_report() -> None:
    """Interleaved timing of the uncontended blocking lock (printed with -s)."""
    from microstd.bench.sync import uncontended_report

    report = uncontended_report(rounds=3, batch=200)
    print(report)
    assert "python" in report
