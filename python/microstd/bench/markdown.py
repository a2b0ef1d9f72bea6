"""Markdown tables of a `microstd bench --json` run, for the README.

`benches/readme_tables.py` puts `tables(data)` between the README's
performance markers, and a test checks the README still holds exactly what
the saved run renders to, so the published numbers are the bench's own.
"""

from __future__ import annotations

from typing import Any

from microstd.bench.report import format_ops, ratio_text

__all__ = ["tables"]


def _spread(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "-"
    text = ratio_text(spread["geomean"])
    if spread["count"] > 1:
        text += f" ({ratio_text(spread['min'])} .. {ratio_text(spread['max'])})"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _meta(meta: dict[str, Any]) -> str:
    if not meta.get("rust_core"):
        core = "no Rust core (pure twins)"
    else:
        core = "Rust core, debug build" if meta.get("debug_build") else "Rust core, release build"
    mode = ", `--quick`" if meta.get("quick") else ""
    return (
        f"Measured {str(meta.get('date', '?'))[:10]} by `microstd bench --json`{mode} on"
        f" {meta.get('cpu', '?')} ({meta.get('cores', '?')} cores, {meta.get('os', '?')}),"
        f" {meta.get('python', '?')}, {core}."
    )


def _area(area: str, rows: list[dict[str, Any]]) -> list[str]:
    cases: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    out = [
        f"**{area}**",
        "",
        "| case | microstd ops/s | twin ops/s | fastest peer ops/s | microstd vs twin"
        " | microstd vs fastest peer |",
        "|---|---:|---:|---:|---|---|",
    ]
    for title, case_rows in cases.items():
        twin = next((r for r in case_rows if r["role"] == "twin"), None)
        peers = [r for r in case_rows if r["role"] == "peer" and not r["error"]]
        best = max(peers, key=lambda r: r["ops_per_second"], default=None)
        core_rows = [r for r in case_rows if r["role"] == "core"]
        for core in core_rows:
            name = title if len(core_rows) == 1 else f"{title}: {core['label']}"
            if core["error"]:
                out.append(f"| {_cell(name)} | FAILED: {_cell(core['error'])} | | | | |")
                continue
            twin_ops = "-" if twin is None or twin["error"] else format_ops(twin["ops_per_second"])
            peer_ops = f"{format_ops(best['ops_per_second'])} ({best['label']})" if best else "-"
            vs_twin = ratio_text(core["vs_twin"]) if core["vs_twin"] is not None else "-"
            vs_peer = ratio_text(core["vs_best_peer"]) if core["vs_best_peer"] is not None else "-"
            out.append(
                f"| {_cell(name)} | {format_ops(core['ops_per_second'])} | {twin_ops}"
                f" | {_cell(peer_ops)} | {vs_twin} | {vs_peer} |"
            )
    return out


def tables(data: dict[str, Any]) -> str:
    """The summary table, then one table per area, of a saved run."""
    lines = [
        _meta(data.get("meta", {})),
        "",
        "| area | cases | failed | microstd vs twin | microstd vs fastest peer |",
        "|---|---:|---:|---|---|",
    ]
    for s in data["summary"]:
        lines.append(
            f"| {s['area']} | {s['cases']} | {s['failed']} | {_spread(s['vs_twin'])}"
            f" | {_spread(s['vs_best_peer'])} |"
        )
    areas: dict[str, list[dict[str, Any]]] = {}
    for row in data["results"]:
        areas.setdefault(row["area"], []).append(row)
    for area, rows in areas.items():
        lines += ["", *_area(area, rows)]
    return "\n".join(lines) + "\n"
