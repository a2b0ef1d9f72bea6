"""`microstd bench`: the Rust core against the pure twins and peer packages.

Each area contributes a module with `cases(quick: bool) -> list[Case]`;
`AREAS` maps an area's name to that module, imported only when run; the
areas in `OPT_IN` need servers and run only when named.

A run measures the areas one after another and prints each area's table as
soon as it is done, so nothing measured is lost if a later area fails or the
run is interrupted. A case that fails (an exception, a wrong result, a
missing optional package) is reported with its reason and the run goes on;
`Run.failed` says whether anything did.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from microstd.bench.progress import Progress
from microstd.bench.report import cases_of, format_area, format_summary, summarize, to_json
from microstd.bench.runner import Case, Result, measure_group

__all__ = ["AREAS", "DESCRIPTIONS", "OPT_IN", "Case", "Result", "Run", "machine", "run"]

AREAS: dict[str, str] = {
    "codec": "microstd.bench.codec",
    "store": "microstd.bench.store",
    "broker": "microstd.bench.broker",
    "sync": "microstd.bench.sync",
    "rpc": "microstd.bench.rpc",
    "postgres": "microstd.bench.postgres",
}
#: Areas that need servers of their own: run only when named.
OPT_IN = frozenset({"postgres"})

#: One line per area, for `microstd bench --help`.
DESCRIPTIONS: dict[str, str] = {
    "codec": "msgpack, CBOR, JSON encode/decode and typed decode vs msgpack, ormsgpack,"
    " msgspec, cbor2, orjson, pydantic",
    "store": "memory:// store read, write, list, read_many: Rust core vs pure twin",
    "broker": "memory:// broker routing, fan-out, async delivery: Rust core vs pure twin",
    "sync": "memory:// locks, sync and async, hand-offs vs threading.Lock / asyncio.Lock",
    "rpc": "Service and Client over loopback HTTP vs a bare aiohttp handler",
    "postgres": "postgresql:// store read, write, list, CAS vs asyncpg by hand and the redis://"
    " store (only when named; needs $MICROSTD_BENCH_POSTGRES, optionally $MICROSTD_BENCH_REDIS)",
}

#: Seconds each case is timed for (split in rounds; the best round counts).
SECONDS = {False: 0.3, True: 0.1}


@dataclass
class Run:
    """What a run measured: `results` in order, and whether it was cut short."""

    results: list[Result] = field(default_factory=list)
    meta: dict[str, object] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.error is not None]

    def to_json(self) -> dict[str, object]:
        return to_json(self.results, {**self.meta, "interrupted": self.interrupted})


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(quick: bool = False) -> dict[str, object]:
    """What the numbers were measured on: date, CPU, OS, Python, build."""
    from microstd import _accel

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "rust_core": _accel.AVAILABLE,
        "debug_build": bool(getattr(_accel.core, "DEBUG_BUILD", False)),
        "pure": bool(os.environ.get("MICROSTD_PURE")),
        "quick": quick,
    }


def _failed_area(area: str, exc: BaseException) -> Result:
    # Shown like a failed case, so the report and the exit status count it.
    case = Case(area, "(preparing the area's cases)", "prepare", "microstd", _nothing, role="core")
    return Result(case, 0.0, 0, error=f"{type(exc).__name__}: {exc}")


def _nothing() -> None:
    return None


def _collect(area: str, quick: bool) -> list[Case]:
    module = importlib.import_module(AREAS[area])
    cases: list[Case] = module.cases(quick)
    return cases


def _groups(cases: list[Case]) -> list[list[Case]]:
    """Consecutive cases of one group: the rows measured together."""
    out: list[list[Case]] = []
    for case in cases:
        if out and (out[-1][0].area, out[-1][0].group) == (case.area, case.group):
            out[-1].append(case)
        else:
            out.append([case])
    return out


def _print(out: TextIO, text: str) -> None:
    out.write(text + "\n\n")
    out.flush()


def run(
    areas: list[str],
    *,
    json_path: str | None = None,
    html_path: str | None = None,
    quick: bool = False,
    progress: bool = True,
    out: TextIO | None = None,
) -> Run:
    """Measure every case of `areas`, printing each area's table as it finishes,
    then the summary; optionally save the run as JSON and as an HTML page.

    KeyboardInterrupt stops the run: what was measured is still printed and
    saved, and the returned `Run` says it was interrupted.
    """
    out = out if out is not None else sys.stdout
    bar = Progress(areas, enabled=progress)
    result = Run(meta=machine(quick))
    bar.start(quick)
    if result.meta["debug_build"]:
        bar.clear()
        print(
            "microstd bench: the Rust core is a DEBUG build (maturin develop without --release);"
            " its numbers are not representative: `maturin develop --release`"
            " or `pip install .` builds the release core",
            file=sys.stderr,
        )
    seconds = SECONDS[quick]
    area_results: list[Result] = []
    try:
        for area in areas:
            bar.preparing(area)
            area_results = []
            try:
                cases = _collect(area, quick)
            except Exception as exc:
                cases = []
                area_results.append(_failed_area(area, exc))
            bar.prepared(len(cases))
            for group in _groups(cases):
                bar.case(group[0].group, len(group))
                area_results += measure_group(group, seconds=seconds)
            result.results += area_results
            bar.area_done(sum(r.error is not None for r in area_results))
            _print(out, format_area(cases_of(area_results)))
            area_results = []
    except KeyboardInterrupt:
        result.interrupted = True
        bar.clear()
        result.results += area_results
        if area_results:
            _print(out, format_area(cases_of(area_results)) + "\n(interrupted)")
    _print(out, format_summary(summarize(cases_of(result.results))))
    data = result.to_json()
    if json_path:
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
    if html_path:
        from microstd.bench.html import render

        Path(html_path).write_text(render(data), encoding="utf-8")
    return result
