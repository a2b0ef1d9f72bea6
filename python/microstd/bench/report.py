"""What `microstd bench` reports: per case, every implementation's ops/s and
microstd's ratio to its twin and to the best peer, as text and as JSON.

Every ratio is microstd's implementation against another, always read the
same way and always written with its direction: "2.10x faster" means
microstd's row does 2.1 times the other's operations per second, "1.25x
slower" that it does 1/1.25 of them (each call takes 1.25 times as long).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from microstd.bench.runner import Result

__all__ = [
    "AreaSummary",
    "CaseReport",
    "Row",
    "cases_of",
    "format_area",
    "format_ops",
    "format_summary",
    "format_table",
    "ratio_text",
    "summarize",
    "to_json",
]


@dataclass(frozen=True)
class Row:
    """One implementation's line in a case; the ratios are set on `core` rows only."""

    label: str
    role: str
    impl: str
    ops_per_second: float
    error: str | None
    vs_twin: float | None = None
    vs_best_peer: float | None = None
    best_peer: str | None = None
    in_summary: bool = True


@dataclass(frozen=True)
class CaseReport:
    """One case (`title`) of an area: the rows, in the order they were measured."""

    area: str
    title: str
    rows: list[Row]

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.error is not None]


@dataclass(frozen=True)
class Spread:
    """Ratios of several cases: their geometric mean and range."""

    count: int
    geomean: float
    low: float
    high: float

    @classmethod
    def of(cls, ratios: Iterable[float]) -> Spread | None:
        values = [r for r in ratios if r > 0 and math.isfinite(r)]
        if not values:
            return None
        mean = math.exp(sum(math.log(v) for v in values) / len(values))
        return cls(len(values), mean, min(values), max(values))

    def text(self) -> str:
        if self.count == 1:
            return ratio_text(self.geomean)
        return f"{ratio_text(self.geomean)} ({ratio_text(self.low)} .. {ratio_text(self.high)})"


@dataclass(frozen=True)
class AreaSummary:
    area: str
    cases: int
    failed: int
    vs_twin: Spread | None = field(default=None)
    vs_best_peer: Spread | None = field(default=None)


def ratio_text(ratio: float) -> str:
    """`2.1` -> "2.10x faster", `0.8` -> "1.25x slower": always >= 1, with its direction."""
    if ratio <= 0 or not math.isfinite(ratio):
        return "n/a"
    factor, word = (ratio, "faster") if ratio >= 1 else (1 / ratio, "slower")
    digits = 2 if factor < 10 else 1 if factor < 100 else 0
    return f"{factor:.{digits}f}x {word}"


def format_ops(ops: float) -> str:
    """Operations per second with an SI suffix: 1234567 -> "1.23M"."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if ops >= scale:
            return f"{ops / scale:.2f}{unit}"
    return f"{ops:.1f}"


def _row(result: Result) -> Row:
    c = result.case
    ops = result.ops_per_second if result.error is None else 0.0
    return Row(c.label, c.role, c.impl, ops, result.error, in_summary=c.in_summary)


def _with_ratios(rows: list[Row]) -> list[Row]:
    twin = next((r for r in rows if r.role == "twin" and r.ops_per_second > 0), None)
    peers = [r for r in rows if r.role == "peer" and r.ops_per_second > 0]
    best = max(peers, key=lambda r: r.ops_per_second, default=None)
    out: list[Row] = []
    for r in rows:
        if r.role == "core" and r.ops_per_second > 0:
            r = Row(
                r.label,
                r.role,
                r.impl,
                r.ops_per_second,
                r.error,
                vs_twin=r.ops_per_second / twin.ops_per_second if twin else None,
                vs_best_peer=r.ops_per_second / best.ops_per_second if best else None,
                best_peer=best.label if best else None,
                in_summary=r.in_summary,
            )
        out.append(r)
    return out


def cases_of(results: Iterable[Result]) -> list[CaseReport]:
    """Results grouped into cases by (area, group), in first-seen order, ratios set."""
    grouped: dict[tuple[str, str], list[Row]] = {}
    for result in results:
        grouped.setdefault((result.case.area, result.case.group), []).append(_row(result))
    return [CaseReport(area, title, _with_ratios(rows)) for (area, title), rows in grouped.items()]


def summarize(cases: list[CaseReport]) -> list[AreaSummary]:
    """Per area, in order: case and failure counts, and the core rows' ratios."""
    areas: dict[str, list[CaseReport]] = {}
    for case in cases:
        areas.setdefault(case.area, []).append(case)
    out: list[AreaSummary] = []
    for area, area_cases in areas.items():
        core = [r for c in area_cases for r in c.rows if r.role == "core" and r.in_summary]
        out.append(
            AreaSummary(
                area,
                len(area_cases),
                sum(len(c.failed) for c in area_cases),
                Spread.of(r.vs_twin for r in core if r.vs_twin is not None),
                Spread.of(r.vs_best_peer for r in core if r.vs_best_peer is not None),
            )
        )
    return out


def _columns(lines: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def format_area(cases: list[CaseReport]) -> str:
    """An area's table: one block per case, one line per implementation.

    The ratio columns are on microstd's rows: against its twin and against
    the fastest peer (named). A failed row says FAILED and, under it, why.
    """
    if not cases:
        return ""
    area = cases[0].area
    summary = summarize(cases)[0]
    head = f"== {area}: {_summary_line(summary)}"
    lines: list[list[str]] = [["case", "implementation", "ops/s", "vs twin", "vs best peer"]]
    notes: dict[int, str] = {}  # line index -> failure reason printed under it
    for case in cases:
        for i, r in enumerate(case.rows):
            ops = "FAILED" if r.error is not None else format_ops(r.ops_per_second)
            twin = ratio_text(r.vs_twin) if r.vs_twin is not None else ""
            peer = (
                f"{ratio_text(r.vs_best_peer)} ({r.best_peer})"
                if r.vs_best_peer is not None
                else ""
            )
            lines.append([case.title if i == 0 else "", r.label, ops, twin, peer])
            if r.error is not None:
                notes[len(lines) - 1] = r.error
        lines.append(["", "", "", "", ""])  # a blank line between cases
    table = _columns(lines[:-1], right={2})
    out = [head, table[0], "-" * max(len(t) for t in table)]
    for i, text in enumerate(table[1:], start=1):
        out.append(text)
        if i in notes:
            out.append(f"    ! {notes[i]}")
    return "\n".join(out)


def _summary_line(s: AreaSummary) -> str:
    parts = [f"{s.cases} cases"]
    if s.failed:
        parts.append(f"{s.failed} FAILED")
    if s.vs_twin is not None:
        parts.append(f"vs twin {ratio_text(s.vs_twin.geomean)}")
    if s.vs_best_peer is not None:
        parts.append(f"vs best peer {ratio_text(s.vs_best_peer.geomean)}")
    return ", ".join(parts)


def format_summary(summaries: list[AreaSummary]) -> str:
    """The summary table: per area, microstd against its twin and the best peer.

    Each cell is the geometric mean over the area's cases, with the range.
    """
    lines = [["area", "cases", "failed", "microstd vs twin", "microstd vs best peer"]]
    for s in summaries:
        lines.append(
            [
                s.area,
                str(s.cases),
                str(s.failed),
                s.vs_twin.text() if s.vs_twin else "-",
                s.vs_best_peer.text() if s.vs_best_peer else "-",
            ]
        )
    table = _columns(lines, right={1, 2})
    rule = "-" * max(len(t) for t in table)
    return "\n".join(
        [
            "Summary: microstd's ops/s against its twin and the fastest peer (geometric mean"
            " over the area's cases, range in parentheses)",
            table[0],
            rule,
            *table[1:],
        ]
    )


def format_table(results: list[Result]) -> str:
    """The full text report of `results`: the summary, then each area's table."""
    cases = cases_of(results)
    areas: dict[str, list[CaseReport]] = {}
    for case in cases:
        areas.setdefault(case.area, []).append(case)
    blocks = [format_summary(summarize(cases))]
    blocks += [format_area(area_cases) for area_cases in areas.values()]
    return "\n\n".join(blocks)


def _spread_json(s: Spread | None) -> dict[str, float] | None:
    if s is None:
        return None
    return {"count": s.count, "geomean": s.geomean, "min": s.low, "max": s.high}


def to_json(results: list[Result], meta: dict[str, object]) -> dict[str, object]:
    """The run as plain data: `meta`, a per-area `summary` and one row per result."""
    cases = cases_of(results)
    return {
        "meta": meta,
        "summary": [
            {
                "area": s.area,
                "cases": s.cases,
                "failed": s.failed,
                "vs_twin": _spread_json(s.vs_twin),
                "vs_best_peer": _spread_json(s.vs_best_peer),
            }
            for s in summarize(cases)
        ],
        "results": [
            {
                "area": c.area,
                "case": c.title,
                "label": r.label,
                "role": r.role,
                "ops_per_second": r.ops_per_second,
                "vs_twin": r.vs_twin,
                "vs_best_peer": r.vs_best_peer,
                "best_peer": r.best_peer,
                "error": r.error,
            }
            for c in cases
            for r in c.rows
        ],
    }
