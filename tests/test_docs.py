"""The documentation site: every page's Python blocks run, in order, and its
links hold.

A page added to docs/ is picked up here without any change. The blocks of a
page run in one namespace, in order (a page may build on its earlier
blocks), in an empty temporary directory. Conventions for blocks that cannot
run and for shown output: tests/_doc_blocks.py. The site itself is built with
`mkdocs build --strict` by .ci/run (and below, when mkdocs is installed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _doc_blocks import ROOT, blocks, module_for, run

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def test_there_are_pages() -> None:
    assert {p.name for p in PAGES} >= {"index.md", "codec.md", "config.md", "cli.md"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = blocks(page)
    for block in found:
        assert block.not_run != "", f"{block.where}: say why the block is not run"
    monkeypatch.chdir(tmp_path)
    with module_for(f"docs_{page.stem}") as module:
        for block in found:
            if block.not_run is None:
                run(block, module)


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_readme_links_every_page_in_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {link.split("#")[0] for link in _links(readme)}
    nav = re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert nav, "mkdocs.yml has a nav"
    missing = [page for page in nav if f"docs/{page}" not in linked]
    assert not missing, f"the README does not link {missing}"
    index = {link.split("#")[0] for link in _links((DOCS / "index.md").read_text())}
    missing = [page for page in nav if page != "index.md" and page not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev and docs extras")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "index.html").exists()
    for page in PAGES:
        if page.name != "index.md":
            assert (tmp_path / page.stem / "index.html").exists(), page.name


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


def test_blocks_marked_not_run_say_why_and_prints_blocks_are_checked(tmp_path: Path) -> None:
    page = _page(
        tmp_path,
        "# t\n\n```python\nx = 1\n```\n\n"
        "<!-- not run: needs a server -->\n```py\nconnect()\n```\n\n"
        "```python\nprint(x + 1)\n```\n\n<!-- prints -->\n```text\n2\n```\n\n"
        "```sh\nnot python\n```\n\nprose\n\n```text\nnot output: prose came between\n```\n",
    )
    found = blocks(page)
    assert [(b.line, b.not_run, b.prints) for b in found] == [
        (4, None, None),
        (9, "needs a server", None),
        (13, None, "2\n"),
    ]
    with module_for("docs_selftest") as module:
        run(found[0], module)
        run(found[2], module)  # prints "2", as shown


def test_a_block_that_prints_something_else_fails(tmp_path: Path) -> None:
    page = _page(tmp_path, "```python\nprint('a')\n```\n<!-- prints -->\n```text\nb\n```\n")
    (block,) = blocks(page)
    with module_for("docs_selftest") as module, pytest.raises(AssertionError, match="prints"):
        run(block, module)


def test_a_failing_block_points_at_its_markdown_line(tmp_path: Path) -> None:
    page = _page(tmp_path, "# t\n\n```python\nok = 1\nraise ValueError('line 5')\n```\n")
    (block,) = blocks(page)
    with module_for("docs_selftest") as module, pytest.raises(ValueError) as info:
        run(block, module)
    assert info.traceback[-1].lineno + 1 == 5


def test_the_readme_performance_tables_are_the_saved_run() -> None:
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        import readme_tables
    finally:
        sys.path.remove(str(ROOT / "benches"))
    data = json.loads(readme_tables.SAVED.read_text())
    readme = (ROOT / "README.md").read_text()
    assert readme == readme_tables.render(readme, data), (
        "README.md's performance tables differ from benches/results/bench.json:"
        " run `python benches/readme_tables.py` (after `microstd bench --json ...`)"
    )
    meta = data["meta"]
    # What is published is a whole run of the release core, with nothing failed.
    assert meta["rust_core"]
    assert not meta["debug_build"]
    assert not meta["quick"]
    assert not meta["interrupted"]
    assert all(s["failed"] == 0 for s in data["summary"])
    assert {s["area"] for s in data["summary"]} == {"codec", "store", "broker", "sync", "rpc"}


def test_readme_tables_refuses_a_readme_without_markers() -> None:
    sys.path.insert(0, str(ROOT / "benches"))
    try:
        import readme_tables
    finally:
        sys.path.remove(str(ROOT / "benches"))
    with pytest.raises(ValueError, match="markers"):
        readme_tables.render("# no markers\n", {"summary": [], "results": []})
