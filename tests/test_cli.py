"""The `microstd` command: bench runs, prints a table and saves JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from microstd import cli
from microstd.bench import Case, report, runner


def test_help_lists_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_unknown_area_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "nonsense", "--no-progress"]) == 2
    assert "unknown area" in capsys.readouterr().err


def test_measure_reports_ratios_against_the_baseline() -> None:
    slow = Case("t", "g", "sum", "python", lambda: sum(range(2000)), baseline=True)
    fast = Case("t", "g", "sum", "rust", lambda: sum(range(20)))
    results = [runner.measure(c, seconds=0.02) for c in (slow, fast)]
    ratios = report.ratios(results)
    assert ratios[id(results[0])] == pytest.approx(1.0)
    assert ratios[id(results[1])] is not None
    assert ratios[id(results[1])] > 1.0
    table = report.format_table(results)
    assert "(base)" in table
    assert "x" in table


def test_a_wrong_result_is_reported_not_timed() -> None:
    case = Case("t", "g", "wrong", "rust", lambda: 1, check=lambda r: r == 2)
    result = runner.measure(case, seconds=0.01)
    assert result.error == "result check failed"
    assert result.ops_per_second == 0.0


def test_a_failing_case_is_reported_not_raised() -> None:
    def boom() -> None:
        raise ValueError("peer rejects input")

    result = runner.measure(Case("t", "g", "boom", "peer", boom), seconds=0.01)
    assert result.error is not None
    assert "peer rejects input" in result.error


def test_bench_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "microstd",
            "bench",
            "codec",
            "--quick",
            "--no-progress",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ops/s" in proc.stdout
    data = json.loads(out.read_text())
    assert data["meta"]["python"]
    assert all("ratio_vs_baseline" in row for row in data["results"])
