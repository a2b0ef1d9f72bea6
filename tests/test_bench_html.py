"""`microstd bench --html`: a self-contained page whose charts show the run's numbers.

The page is checked as text (nothing loaded from anywhere, one bar per
measured row, lengths in proportion) and then opened in headless Chromium:
its DOM must hold the charts and a screenshot must show the bars' colours.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from _png import colors
from _servers import require_binary
from microstd.bench import Case, Result, machine
from microstd.bench.html import COLORS, render
from microstd.bench.report import to_json


def _results() -> list[Result]:
    def case(group: str, impl: str, **kw: Any) -> Case:
        return Case("codec", group, group, impl, lambda: None, **kw)

    return [
        Result(case("encode small", "rust"), 4_000_000.0, 1),
        Result(case("encode small", "python"), 1_000_000.0, 1),
        Result(case("encode small", "msgpack"), 2_000_000.0, 1),
        Result(case("encode small", "ormsgpack"), 0.0, 0, error="TypeError: rejects <x>"),
        Result(case("decode small", "rust"), 1_000_000.0, 1),
        Result(case("decode small", "python"), 500_000.0, 1),
    ]


def _page() -> str:
    return render(to_json(_results(), machine(quick=True)))


class _Bars(HTMLParser):
    """Collects the SVG bars (`rect.bar`) and the svg count of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.svgs += 1
        if tag == "rect" and "bar" in found.get("class", "").split():
            self.bars.append(found)


def _bars(page: str) -> _Bars:
    parser = _Bars()
    parser.feed(page)
    return parser


def test_the_page_loads_nothing_from_anywhere() -> None:
    page = _page()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "href="):
        assert needle not in page.lower(), needle
    assert not re.search(r"(https?:)?//[a-z0-9]", page, flags=re.I)


def test_one_bar_per_measured_row_in_proportion() -> None:
    page = _page()
    parsed = _bars(page)
    case_bars = [b for b in parsed.bars if "summary" not in b["class"].split()]
    assert len(case_bars) == 5  # the failed row has no bar...
    assert "FAILED: TypeError: rejects &lt;x&gt;" in page  # ...but says why, escaped
    assert parsed.svgs == 3  # the summary chart and one chart per case
    widths = {float(b["data-ops"]): float(b["width"]) for b in case_bars[:3]}
    assert widths[4e6] / widths[1e6] == pytest.approx(4.0)
    assert widths[2e6] / widths[1e6] == pytest.approx(2.0)
    roles = [b["class"].split()[1] for b in case_bars]
    assert roles == ["core", "twin", "peer", "core", "twin"]
    assert "4.00x faster than twin" in page
    assert "2.00x faster than the fastest peer (msgpack)" in page
    summary = [b for b in parsed.bars if "summary" in b["class"].split()]
    assert [float(b["data-ratio"]) for b in summary] == pytest.approx(
        [(4 * 2) ** 0.5, 2.0], rel=1e-4
    )


def _chromium(*args: str, profile: str) -> subprocess.CompletedProcess[bytes]:
    binary = require_binary("chromium", hint="Debian package chromium; .ci/run installs it")
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_chromium_renders_the_charts(tmp_path: Path) -> None:
    page = tmp_path / "bench.html"
    page.write_text(_page(), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = _chromium("--dump-dom", page.as_uri(), profile=profile)
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        # What the browser built from the page: the same charts and bars.
        parsed = _bars(dom.stdout.decode())
        assert parsed.svgs == 3
        assert len(parsed.bars) == 7

        shot = tmp_path / "shot.png"
        taken = _chromium(
            f"--screenshot={shot}", "--window-size=1000,1000", page.as_uri(), profile=profile
        )
        assert taken.returncode == 0, taken.stderr.decode(errors="replace")[-2000:]
    width, height, counts = colors(shot.read_bytes())
    assert (width, height) == (1000, 1000)

    def pixels(hex_color: str) -> int:
        rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
        return counts[rgb]  # type: ignore[index]

    # Every bar is 20 px high: the painted colours prove the SVG rendered.
    assert pixels(COLORS["core"]) > 20 * 100
    assert pixels(COLORS["twin"]) > 20 * 50
    assert pixels(COLORS["peer"]) > 20 * 100
