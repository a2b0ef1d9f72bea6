"""`microstd bench --html FILE`: the run as one self-contained page.

The page is built from the same JSON `--json` writes, so it shows the same
numbers. It loads nothing (no script, stylesheet, font or image from
anywhere): the styles are inline and every chart is inline SVG, so the file
can be mailed, attached to a CI run or opened offline.

Charts: a summary chart of each area's geometric-mean ratio against the twin
and the best peer (bars on a log scale around 1x), then one bar chart per
case, one bar per implementation, its length proportional to ops/s.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from microstd.bench.report import format_ops, ratio_text

__all__ = ["COLORS", "render"]

#: Bar colours by role (the page's legend says which is which).
COLORS = {"core": "#1f6fd1", "twin": "#e8710a", "peer": "#8a94a6"}
_FAILED = "#c62828"
_SLOWER = "#b5483b"  # a summary bar left of 1x

_BAR_H, _GAP, _LABEL_W, _CHART_W, _VALUE_W = 20, 6, 280, 380, 300

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px;
       color: #1d2330; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccd; }
h3 { font-size: 1em; margin: 1.4em 0 .3em; }
.meta { color: #556; } .failed { color: #c62828; font-weight: 600; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { padding: .25em .8em; border-bottom: 1px solid #e3e6ee; text-align: left; }
th { background: #f3f5f9; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 1.5em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: .4em;
            vertical-align: -1px; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
"""


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        + "".join(body)
        + "</svg>"
    )


def _case_chart(title: str, rows: list[dict[str, Any]]) -> str:
    """One bar per row, length proportional to ops/s; a failed row says so."""
    top = max((r["ops_per_second"] for r in rows if not r["error"]), default=0.0)
    body: list[str] = []
    y = 0
    for r in rows:
        label = escape(r["label"])
        body.append(f'<text x="0" y="{y + 14}">{label}</text>')
        if r["error"]:
            body.append(
                f'<text x="{_LABEL_W}" y="{y + 14}" fill="{_FAILED}" class="failed-bar">'
                f"FAILED: {escape(r['error'])}</text>"
            )
        else:
            ops = r["ops_per_second"]
            width = max(1.0, _CHART_W * ops / top) if top > 0 else 1.0
            body.append(
                f'<rect class="bar {r["role"]}" x="{_LABEL_W}" y="{y}" width="{width:.1f}"'
                f' height="{_BAR_H}" fill="{COLORS[r["role"]]}"'
                f' data-ops="{ops:.6g}"><title>{label}: {format_ops(ops)} ops/s</title></rect>'
            )
            value = f"{format_ops(ops)} ops/s"
            if r["vs_twin"] is not None:
                value += f" · {ratio_text(r['vs_twin'])} than twin"
            body.append(f'<text x="{_LABEL_W + width + 6:.1f}" y="{y + 14}">{value}</text>')
        y += _BAR_H + _GAP
    return _svg(_LABEL_W + _CHART_W + _VALUE_W, y, body, title)


_SUMMARY_BARS = (("vs_twin", "twin", "vs twin"), ("vs_best_peer", "peer", "vs best peer"))


def _summary_chart(summary: list[dict[str, Any]]) -> str:
    """Per area, the geometric-mean ratio vs the twin and vs the best peer, on a
    log scale centred on 1x (bars right of the line: faster)."""
    half = _CHART_W / 2
    span = math.log(30)  # 30x faster or slower reaches the chart's edge
    body: list[str] = []
    y = 0
    for s in summary:
        for key, role, what in _SUMMARY_BARS:
            spread = s[key]
            if spread is None:
                continue
            ratio = spread["geomean"]
            reach = max(-1.0, min(1.0, math.log(ratio) / span)) * half
            x = _LABEL_W + half + min(0.0, reach)
            body.append(f'<text x="0" y="{y + 14}">{escape(s["area"])} {what}</text>')
            body.append(
                f'<rect class="bar summary {role}" x="{x:.1f}" y="{y}"'
                f' width="{max(1.0, abs(reach)):.1f}" height="{_BAR_H}"'
                f' fill="{COLORS["core"] if ratio >= 1 else _SLOWER}" data-ratio="{ratio:.6g}"/>'
            )
            body.append(
                f'<text x="{_LABEL_W + _CHART_W + 6}" y="{y + 14}">'
                f"microstd {ratio_text(ratio)}</text>"
            )
            y += _BAR_H + _GAP
    mid = _LABEL_W + half
    body.append(f'<line x1="{mid}" y1="0" x2="{mid}" y2="{y}" stroke="#1d2330"/>')
    # The scale: the centre line is 1x, the edges 30x (log scale).
    for x, anchor, text in (
        (_LABEL_W, "start", "30x slower"),
        (mid, "middle", "1x"),
        (_LABEL_W + _CHART_W, "end", "30x faster"),
    ):
        body.append(f'<text x="{x}" y="{y + 14}" text-anchor="{anchor}">{text}</text>')
    return _svg(_LABEL_W + _CHART_W + _VALUE_W, y + 20, body, "summary")


def _summary_table(summary: list[dict[str, Any]]) -> str:
    def cell(spread: dict[str, float] | None) -> str:
        if spread is None:
            return "-"
        text = ratio_text(spread["geomean"])
        if spread["count"] > 1:
            text += f" ({ratio_text(spread['min'])} .. {ratio_text(spread['max'])})"
        return escape(text)

    rows = "".join(
        f"<tr><td>{escape(s['area'])}</td><td class=num>{s['cases']}</td>"
        f"<td class=num>{s['failed']}</td><td>{cell(s['vs_twin'])}</td>"
        f"<td>{cell(s['vs_best_peer'])}</td></tr>"
        for s in summary
    )
    return (
        "<table><tr><th>area</th><th>cases</th><th>failed</th><th>microstd vs twin</th>"
        f"<th>microstd vs best peer</th></tr>{rows}</table>"
    )


def _meta_line(meta: dict[str, Any]) -> str:
    parts = [
        str(meta.get("date", "")),
        f"{meta.get('cpu', '?')}, {meta.get('cores', '?')} cores",
        str(meta.get("os", "")),
        str(meta.get("python", "")),
        "no Rust core (pure twins)"
        if not meta.get("rust_core")
        else "Rust core, DEBUG build: not representative"
        if meta.get("debug_build")
        else "Rust core, release build",
    ]
    if meta.get("quick"):
        parts.append("quick mode")
    if meta.get("interrupted"):
        parts.append("INTERRUPTED: partial results")
    return escape(" · ".join(p for p in parts if p))


def render(data: dict[str, Any]) -> str:
    """The HTML page for a run's JSON (`Run.to_json()` or a saved `--json` file)."""
    summary = data["summary"]
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in data["results"]:
        cases.setdefault((row["area"], row["case"]), []).append(row)
    legend = "".join(
        f'<span><i style="background:{color}"></i>{name}</span>'
        for name, color in (
            ("microstd", COLORS["core"]),
            ("pure-Python twin", COLORS["twin"]),
            ("peer package / stdlib", COLORS["peer"]),
        )
    )
    failed = sum(s["failed"] for s in summary)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>microstd bench</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>microstd bench</h1>",
        f'<p class="meta">{_meta_line(data.get("meta", {}))}</p>',
        f'<p class="failed">{failed} case(s) FAILED</p>' if failed else "",
        "<h2>Summary</h2>",
        "<p>Operations per second of microstd against its pure-Python twin and the fastest"
        " peer package, as a geometric mean over each area's cases.</p>",
        _summary_table(summary),
        _summary_chart(summary),
        f'<p class="legend">{legend}</p>',
    ]
    area = None
    for (case_area, title), rows in cases.items():
        if case_area != area:
            area = case_area
            parts.append(f'<h2 id="{escape(area)}">{escape(area)}</h2>')
        parts.append(f'<section class="case"><h3>{escape(title)}</h3>')
        parts.append(_case_chart(title, rows))
        notes = [
            f"{escape(r['label'])}: {escape(ratio_text(r['vs_best_peer']))} than the fastest peer"
            f" ({escape(r['best_peer'] or '')})"
            for r in rows
            if r["vs_best_peer"] is not None
        ]
        if notes:
            parts.append("<p>" + "<br>".join(notes) + "</p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)
