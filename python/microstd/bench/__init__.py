"""`microstd bench`: the Rust core against the pure twins and peer packages.

Each area contributes a module with `cases(quick: bool) -> list[Case]`;
`AREAS` maps an area's name to that module, imported only when run.
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from pathlib import Path

from microstd.bench.progress import Progress
from microstd.bench.report import format_table, to_json
from microstd.bench.runner import Case, Result, measure

__all__ = ["AREAS", "Case", "Result", "run"]

AREAS: dict[str, str] = {
    "codec": "microstd.bench.codec",
    "store": "microstd.bench.store",
    "broker": "microstd.bench.broker",
    "sync": "microstd.bench.sync",
    "rpc": "microstd.bench.rpc",
}


def collect(areas: list[str], quick: bool) -> list[Case]:
    """The cases of `areas`, skipping (with a note) areas not built yet."""
    cases: list[Case] = []
    for area in areas:
        try:
            module = importlib.import_module(AREAS[area])
        except ModuleNotFoundError as exc:
            if exc.name != AREAS[area]:
                raise
            print(f"microstd bench: area {area!r} has no benchmarks yet", file=sys.stderr)
            continue
        cases.extend(module.cases(quick))
    return cases


def run(
    areas: list[str], *, json_path: str | None = None, quick: bool = False, progress: bool = True
) -> list[Result]:
    """Measure every case of `areas`, print the table, and optionally save JSON."""
    cases = collect(areas, quick)
    bar = Progress(len(cases), enabled=progress and sys.stderr.isatty())
    results: list[Result] = []
    for case in cases:
        bar.step(f"{case.group} / {case.name}")
        results.append(measure(case, seconds=0.05 if quick else 0.3))
    bar.done()
    print(format_table(results))
    if json_path:
        meta = {"python": sys.version.split()[0], "machine": platform.machine()}
        Path(json_path).write_text(json.dumps(to_json(results, meta), indent=2) + "\n")
    return results
