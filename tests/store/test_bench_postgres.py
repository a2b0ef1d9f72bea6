"""`microstd bench postgres`: its cases run against private servers, checked; it runs only
when named, and says what it needs when its server is not given."""

from __future__ import annotations

import pytest

from microstd import cli
from microstd.bench import AREAS, OPT_IN
from microstd.bench.postgres import ENV_POSTGRES, ENV_REDIS, KINDS, LABELS, cases
from microstd.bench.runner import measure_group

pytestmark = pytest.mark.services


def test_postgres_is_an_opt_in_bench_area() -> None:
    assert "postgres" in AREAS
    assert "postgres" in OPT_IN


def test_every_case_runs_and_passes_its_check(postgres_url: str, redis_url: str) -> None:
    all_cases = cases(quick=True, postgres_url=postgres_url, redis_url=redis_url)
    assert [c.impl for c in all_cases] == list(KINDS) * 4
    for group in {c.group for c in all_cases}:
        labels = [c.label for c in all_cases if c.group == group]
        assert labels == [LABELS[k] for k in KINDS]
    results = []
    for group in dict.fromkeys(c.group for c in all_cases):  # rows interleaved, as in a run
        results += measure_group([c for c in all_cases if c.group == group], seconds=0.01)
    assert [r.error for r in results] == [None] * len(all_cases)
    assert all(r.ops_per_second > 0 for r in results)
    # The last case's teardown stopped the rig and dropped its table.
    rig = all_cases[0].fn.func.__self__  # type: ignore[attr-defined]
    assert rig.loop is None


def test_without_redis_the_redis_rows_are_left_out(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_REDIS, raising=False)
    assert "redis" not in {c.impl for c in cases(quick=True, postgres_url=postgres_url)}


def test_naming_it_without_a_server_fails_with_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_POSTGRES, raising=False)
    assert cli.main(["bench", "postgres", "--quick", "--no-progress"]) == 1
    assert ENV_POSTGRES in capsys.readouterr().out
