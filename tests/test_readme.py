"""Every ```python block of the README runs, so the examples cannot rot.

The machinery (and the Markdown conventions for blocks that cannot run, or
that show their output) is shared with the docs pages: tests/_doc_blocks.py.
"""

from __future__ import annotations

import pytest

from _doc_blocks import ROOT, Block, blocks, module_for, run

README = ROOT / "README.md"
BLOCKS = blocks(README)


def test_the_readme_has_examples() -> None:
    assert [b for b in BLOCKS if b.not_run is None]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line {b.line}" for b in BLOCKS])
def test_readme_example_runs(block: Block) -> None:
    if block.not_run is not None:
        assert block.not_run, f"{block.where}: say why the block is not run"
        return
    # Each block is its own script: README examples stand alone.
    with module_for(f"readme_line_{block.line}") as module:
        run(block, module)
