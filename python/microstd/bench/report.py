"""The table `microstd bench` prints, and its JSON form."""

from __future__ import annotations

from microstd.bench.runner import Result

__all__ = ["format_table", "ratios", "to_json"]


def ratios(results: list[Result]) -> dict[int, float | None]:
    """Each result's speed relative to its group's baseline (id(result) -> ratio)."""
    base: dict[tuple[str, str], float] = {}
    for r in results:
        if r.case.baseline and r.ops_per_second > 0:
            base[(r.case.area, r.case.group)] = r.ops_per_second
    out: dict[int, float | None] = {}
    for r in results:
        b = base.get((r.case.area, r.case.group))
        out[id(r)] = r.ops_per_second / b if b and r.ops_per_second > 0 else None
    return out


def _human(ops: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if ops >= scale:
            return f"{ops / scale:7.2f}{unit}"
    return f"{ops:8.1f}"


def format_table(results: list[Result]) -> str:
    """A plain-text table: area, case, implementation, ops/s, ratio vs the baseline."""
    r_of = ratios(results)
    head = f"{'area':<8} {'case':<34} {'impl':<12} {'ops/s':>9} {'vs base':>8}"
    lines = [head, "-" * len(head)]
    last_group: tuple[str, str] | None = None
    for r in results:
        group = (r.case.area, r.case.group)
        if last_group is not None and group != last_group:
            lines.append("")
        last_group = group
        ratio = r_of[id(r)]
        ratio_s = "" if ratio is None else f"{ratio:7.2f}x"
        marker = " (base)" if r.case.baseline else ""
        ops = _human(r.ops_per_second) if r.error is None else "   error"
        impl = r.case.impl + marker
        lines.append(f"{r.case.area:<8} {r.case.name[:34]:<34} {impl:<12} {ops:>9} {ratio_s:>8}")
        if r.error:
            lines.append(f"{'':<8} ! {r.error[:90]}")
    return "\n".join(lines)


def to_json(results: list[Result], meta: dict[str, str]) -> dict[str, object]:
    r_of = ratios(results)
    return {
        "meta": meta,
        "results": [
            {
                "area": r.case.area,
                "group": r.case.group,
                "case": r.case.name,
                "impl": r.case.impl,
                "baseline": r.case.baseline,
                "ops_per_second": r.ops_per_second,
                "ratio_vs_baseline": r_of[id(r)],
                "error": r.error,
            }
            for r in results
        ],
    }
