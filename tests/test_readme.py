"""Every ```python block of the README runs, so the examples cannot rot."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    # Run each block as its own module, as a user's script would be: not
    # inheriting this file's __future__ imports, and findable in sys.modules
    # (dataclasses look their module up there).
    name = f"readme_example_{index}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        source = f"README.md python block {index + 1}"
        code = compile(BLOCKS[index], source, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    finally:
        del sys.modules[name]
