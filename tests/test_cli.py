"""The `microstd` command: bench runs, prints a table and saves JSON."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import microstd

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the test extra installs tomli there
    import tomli as tomllib
from microstd import bench, cli
from microstd.bench import Case, report, runner
from microstd.bench.progress import Progress


def test_help_lists_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"microstd {microstd.__version__} (")


def test_bench_help_lists_every_area(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    for area in bench.AREAS:
        assert f"  {area} " in out
    assert "--html" in out
    assert "--quick" in out


def test_unknown_area_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "nonsense", "--no-progress"]) == 2
    assert "unknown area" in capsys.readouterr().err


def _case(impl: str, fn: object, **kw: object) -> Case:
    return Case("t", "sum", "sum", impl, fn, **kw)  # type: ignore[arg-type]


def test_ratios_against_the_twin_and_the_best_peer() -> None:
    results = [
        runner.Result(_case("rust", lambda: 0), 300.0, 1),
        runner.Result(_case("python", lambda: 0), 100.0, 1),
        runner.Result(_case("slowpeer", lambda: 0), 60.0, 1),
        runner.Result(_case("fastpeer", lambda: 0), 600.0, 1),
    ]
    (case,) = report.cases_of(results)
    core = case.rows[0]
    assert (core.label, core.role) == ("microstd (Rust core)", "core")
    assert core.vs_twin == pytest.approx(3.0)
    assert core.vs_best_peer == pytest.approx(0.5)
    assert core.best_peer == "fastpeer"
    assert [r.vs_twin for r in case.rows[1:]] == [None, None, None]
    text = report.format_area([case])
    assert "3.00x faster" in text
    assert "2.00x slower (fastpeer)" in text


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(2.1, "2.10x faster"), (0.8, "1.25x slower"), (1.0, "1.00x faster"), (23.04, "23.0x faster")],
)
def test_ratio_text_states_its_direction(ratio: float, text: str) -> None:
    assert report.ratio_text(ratio) == text


def test_measure_times_a_case() -> None:
    result = runner.measure(_case("rust", lambda: sum(range(20))), seconds=0.02)
    assert result.error is None
    assert result.ops_per_second > 0


def test_a_wrong_result_is_reported_not_timed() -> None:
    case = _case("rust", lambda: 1, check=lambda r: r == 2)
    result = runner.measure(case, seconds=0.01)
    assert result.error == "result check failed"
    assert result.ops_per_second == 0.0


def test_a_failing_case_is_reported_not_raised() -> None:
    def boom() -> None:
        raise ValueError("peer rejects input")

    result = runner.measure(_case("peer", boom), seconds=0.01)
    assert result.error == "ValueError: peer rejects input"


def test_a_failing_setup_or_teardown_is_reported_not_raised() -> None:
    torn_down: list[bool] = []

    def missing() -> None:
        raise ModuleNotFoundError("No module named 'aiohttp'")

    failed = runner.measure(
        _case("rust", lambda: 1, setup=missing, teardown=lambda: torn_down.append(True)),
        seconds=0.01,
    )
    assert failed.error == "ModuleNotFoundError: No module named 'aiohttp'"
    assert torn_down == [True]
    bad_teardown = runner.measure(_case("rust", lambda: 1, teardown=missing), seconds=0.01)
    assert bad_teardown.error is not None
    assert bad_teardown.error.startswith("teardown: ")


def _fake_area(monkeypatch: pytest.MonkeyPatch, name: str, cases: object) -> None:
    module = types.ModuleType(f"fake_bench_{name}")
    module.cases = cases  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(bench.AREAS, name, module.__name__)


def _ok_cases(quick: bool) -> list[Case]:
    def fail() -> None:
        raise RuntimeError("this one breaks")

    return [
        Case("good", "adds", "adds", "rust", lambda: 1 + 1),
        Case("good", "adds", "adds", "python", lambda: sum([1, 1])),
        Case("good", "breaks", "breaks", "rust", fail),
    ]


def test_a_run_goes_on_past_failures_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(quick: bool) -> list[Case]:
        raise ImportError("cannot prepare")

    _fake_area(monkeypatch, "broken", broken)
    _fake_area(monkeypatch, "good", _ok_cases)
    out = io.StringIO()
    done = bench.run(["broken", "good"], quick=True, progress=False, out=out)
    text = out.getvalue()
    assert [r.error for r in done.failed] == [
        "ImportError: cannot prepare",
        "RuntimeError: this one breaks",
    ]
    # The area after the broken one ran, and every result is printed.
    assert "== broken: 1 cases, 1 FAILED" in text
    assert "! ImportError: cannot prepare" in text
    assert "! RuntimeError: this one breaks" in text
    assert text.count("microstd (Rust core)") == 2
    assert "vs twin" in text
    assert "Summary" in text


def test_cli_exit_status_says_whether_anything_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_area(monkeypatch, "good", _ok_cases)
    assert cli.main(["bench", "good", "--quick", "--no-progress"]) == 1
    assert "1 case(s) FAILED" in capsys.readouterr().err

    def fine(quick: bool) -> list[Case]:
        return _ok_cases(quick)[:2]

    _fake_area(monkeypatch, "fine", fine)
    assert cli.main(["bench", "fine", "--quick", "--no-progress"]) == 0


def test_each_area_is_printed_when_it_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()

    def first(quick: bool) -> list[Case]:
        return [Case("first", "one", "one", "rust", lambda: 1)]

    def second(quick: bool) -> list[Case]:
        # By the time the second area prepares, the first one's table is out.
        assert "== first:" in out.getvalue()
        return [Case("second", "two", "two", "rust", lambda: 2)]

    _fake_area(monkeypatch, "first", first)
    _fake_area(monkeypatch, "second", second)
    done = bench.run(["first", "second"], quick=True, progress=False, out=out)
    assert not done.failed


def test_an_interrupted_run_prints_what_it_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    def cases(quick: bool) -> list[Case]:
        return [
            Case("stops", "done first", "x", "rust", lambda: 1),
            Case("stops", "interrupted", "y", "rust", interrupt),
            Case("stops", "never run", "z", "rust", lambda: 1),
        ]

    _fake_area(monkeypatch, "stops", cases)
    out = io.StringIO()
    done = bench.run(["stops"], quick=True, progress=False, out=out)
    assert done.interrupted
    assert [r.case.group for r in done.results] == ["done first"]
    assert "done first" in out.getvalue()
    assert "(interrupted)" in out.getvalue()


def test_progress_off_a_terminal_is_one_line_per_area(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_area(monkeypatch, "good", _ok_cases)
    _fake_area(monkeypatch, "other", lambda quick: _ok_cases(quick)[:1])
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(bench, "machine", _release_machine)
    bench.run(["good", "other"], quick=True, out=io.StringIO())
    lines = err.getvalue().splitlines()
    assert lines[0] == "microstd bench: good, other (quick)"
    assert lines[1].startswith("microstd bench: good done, 3 cases, 1 FAILED in ")
    assert lines[2].startswith("microstd bench: other done, 1 cases in ")
    assert len(lines) == 3


_MACHINE = bench.machine


def _release_machine(quick: bool = False) -> dict[str, object]:
    return {**_MACHINE(quick), "debug_build": False}


def test_a_debug_build_is_called_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "machine", lambda quick: {**_release_machine(), "debug_build": True})
    _fake_area(monkeypatch, "good", lambda quick: _ok_cases(quick)[:1])
    bench.run(["good"], quick=True, progress=False)
    assert "DEBUG build" in capsys.readouterr().err
    monkeypatch.setattr(bench, "machine", _release_machine)
    bench.run(["good"], quick=True, progress=False)
    assert "DEBUG" not in capsys.readouterr().err


def test_rows_of_a_case_are_timed_in_turn() -> None:
    order: list[str] = []

    def row(name: str) -> Case:
        return _case(name, lambda: order.append(name))

    results = runner.measure_group([row("rust"), row("python"), row("peer")], seconds=0.01)
    assert all(r.error is None for r in results)
    # 5 rounds of 3 rows in turn: 14 changes of row at least (one go each: 2).
    changes = sum(a != b for a, b in itertools.pairwise(order))
    assert changes >= 3 * 5 - 1


def test_progress_on_a_terminal_shows_before_the_first_case() -> None:
    stream = io.StringIO()
    bar = Progress(["codec"], stream=stream, tty=True)
    bar.start(quick=True)
    bar.preparing("codec")
    assert "codec (1/1)" in stream.getvalue()
    assert "preparing" in stream.getvalue()
    bar.prepared(2)
    bar.case("msgpack encode: rust")
    assert "0/2" in stream.getvalue().rsplit("\r", 1)[-1]
    bar.area_done(0)
    assert stream.getvalue().endswith("\r")  # the bar is cleared before the table prints


def test_labels_are_unique_and_whole_in_every_case() -> None:
    import importlib

    from microstd.bench import codec, sync

    for area, name in bench.AREAS.items():
        if area in bench.OPT_IN:
            continue  # needs servers: tests/<area> checks its labels
        cases = importlib.import_module(name).cases(True)
        groups: dict[str, list[str]] = {}
        for c in cases:
            groups.setdefault(c.group, []).append(c.label)
        for labels in groups.values():
            assert len(labels) == len(set(labels)), labels
    json_rows = [c for c in codec.cases(True) if c.group.startswith("JSON")]
    assert {c.label for c in json_rows if c.role == "core"} == {"microstd (orjson + hooks)"}
    text = report.format_area(report.cases_of(runner.Result(c, 1.0, 1) for c in sync.cases(True)))
    for c in sync.cases(True):
        assert c.label in text
        assert c.group in text


def test_nothing_is_labelled_rust_without_the_core(tmp_path: Path) -> None:
    out = tmp_path / "pure.json"
    proc = subprocess.run(
        [sys.executable, "-m", "microstd", "bench", "codec", "sync", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**_env(), "MICROSTD_PURE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "rust" not in proc.stdout.lower()
    data = json.loads(out.read_text())
    assert data["meta"]["rust_core"] is False
    assert not [r["label"] for r in data["results"] if "rust" in r["label"].lower()]
    # What is left of microstd's own rows is JSON's default path, through orjson.
    core = {r["label"] for r in data["results"] if r["role"] == "core"}
    assert core
    assert all(label.startswith("microstd (orjson") for label in core), core


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "MICROSTD_PURE"}


def test_a_missing_peer_package_fails_its_cases_and_the_run_goes_on() -> None:
    # The README's main job once crashed here: the rpc area without aiohttp.
    script = (
        "import sys; sys.modules['aiohttp'] = None\n"
        "from microstd.cli import main\n"
        "sys.exit(main(['bench', 'rpc', 'sync', '--quick']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_env(),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "import of aiohttp halted" in proc.stdout  # each rpc case says why it failed
    assert "== sync:" in proc.stdout  # and the next area still ran
    assert "8 case(s) FAILED" in proc.stderr


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
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ops/s" in proc.stdout
    assert "Summary" in proc.stdout
    data = json.loads(out.read_text())
    assert data["meta"]["date"]
    assert data["meta"]["cpu"]
    assert data["meta"]["quick"] is True
    assert [s["area"] for s in data["summary"]] == ["codec"]
    core = [r for r in data["results"] if r["role"] == "core"]
    assert core
    assert all(r["vs_twin"] > 0 and r["best_peer"] for r in core)


def test_markdown_tables_of_a_run() -> None:
    from microstd.bench.markdown import tables

    def case(group: str, impl: str, **kw: object) -> Case:
        return Case("rpc", group, group, impl, lambda: None, **kw)  # type: ignore[arg-type]

    results = [
        runner.Result(case("calls", "bare", role="peer", label="bare | aiohttp"), 100.0, 1),
        runner.Result(case("calls", "server", role="core", label="server"), 80.0, 1),
        runner.Result(case("calls", "client", role="core", label="client"), 0.0, 0, error="boom"),
    ]
    data = report.to_json(results, {"date": "2026-01-02T03:04:05+00:00", "rust_core": True})
    text = tables(data)
    assert text.startswith("Measured 2026-01-02 by `microstd bench --json` on ")
    assert "| rpc | 1 | 1 | - | 1.25x slower |" in text
    assert "| calls: server | 80.0 | - | 100.0 (bare \\| aiohttp) | - | 1.25x slower |" in text
    assert "| calls: client | FAILED: boom |" in text


def test_the_bench_extra_installs_every_peer_the_bench_compares_against() -> None:
    # A peer missing from the extra is silently left out of the README's main
    # job (or, for aiohttp, fails the rpc area): the extra must name them all.
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    installed = {
        re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()
        for req in [*project["dependencies"], *project["optional-dependencies"]["bench"]]
    }
    sources = "".join(p.read_text() for p in (root / "python/microstd/bench").glob("*.py"))
    peers = set(re.findall(r'_peer\("([a-z0-9_]+)"\)', sources)) | {"aiohttp"}
    assert peers >= {"msgpack", "cbor2", "orjson"}
    assert peers <= installed, peers - installed
