"""The Python examples in docs/rpc.md run, in order, and their assertions hold."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "rpc.md"


def test_docs_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    # A real module, so dataclasses defined by the examples can resolve their annotations.
    module = types.ModuleType("docs_rpc")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for i, block in enumerate(blocks):
        code = compile(block, f"{DOC.name} block {i + 1}", "exec", dont_inherit=True)
        exec(code, module.__dict__)  # the documentation is trusted project text
