"""`microstd bench rpc`: its cases run against their own loopback servers, checked."""

from __future__ import annotations

from microstd.bench import AREAS
from microstd.bench.rpc import KINDS, cases
from microstd.bench.runner import measure


def test_rpc_is_a_bench_area() -> None:
    assert "rpc" in AREAS


def test_every_case_runs_and_passes_its_check() -> None:
    all_cases = cases(quick=True)
    assert [c.impl for c in all_cases] == [*KINDS, *KINDS]
    assert [c.baseline for c in all_cases].count(True) == 2  # bare, in each group
    results = [measure(c, seconds=0.01, rounds=1) for c in all_cases]
    assert [r.error for r in results] == [None] * len(all_cases)
    assert all(r.ops_per_second > 0 for r in results)
    # The last case's teardown stopped the rig: its loop is gone.
    rig = all_cases[0].fn.func.__self__  # type: ignore[attr-defined]
    assert rig.loop is None
