"""Running the Python blocks of Markdown files (the README and docs/*.md), so
the examples people copy cannot rot.

Conventions in the Markdown:

- Every fenced block whose language is `python` (or `py`, `python3`) is
  executed. A block that cannot run here (it needs a live server, or shows a
  fragment) is preceded by an HTML comment giving the reason, which readers
  of the rendered page do not see:

      <!-- not run: needs a Redis server at redis://... -->

  The reason must not be empty.
- A ```text block preceded by `<!-- prints -->` right after a Python block is
  what that block prints: its stdout must be exactly that text.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "Block", "blocks", "module_for", "run"]

ROOT = Path(__file__).resolve().parent.parent

_PYTHON = {"python", "py", "python3"}
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^<!--\s*not run:(?P<reason>.*?)-->\s*$")
_PRINTS = re.compile(r"^<!--\s*prints\s*-->\s*$")


@dataclass
class Block:
    """One Python block: where it is, its code, and what it must print."""

    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    not_run: str | None = None  # the reason, when marked not to run
    prints: str | None = None  # the expected stdout, when a prints block follows

    @property
    def where(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The Python blocks of the Markdown file `path`, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    last_python: Block | None = None  # a prints block may follow it
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            text = lines[i].strip()
            if text and not _PRINTS.match(text):
                last_python = None  # prose between: a later text block is not its output
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip().split()
        language = info[0].lower() if info else ""
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(lines[i + 1 : end]) + "\n"
        previous = _previous_text(lines, i)
        if language in _PYTHON:
            marked = _NOT_RUN.match(previous)
            block = Block(path, i + 2, body, marked["reason"].strip() if marked else None)
            out.append(block)
            last_python = block
        elif language == "text" and _PRINTS.match(previous) and last_python is not None:
            last_python.prints = body
            last_python = None
        else:
            last_python = None
        i = end + 1
    return out


def _previous_text(lines: list[str], i: int) -> str:
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    return lines[j].strip() if j >= 0 else ""


@contextlib.contextmanager
def module_for(name: str) -> Iterator[types.ModuleType]:
    """A real module for examples to run in, findable in sys.modules while they
    run (dataclasses defined by an example look their module up there)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        yield module
    finally:
        del sys.modules[name]


def run(block: Block, module: types.ModuleType) -> None:
    """Execute `block` in `module`'s namespace, as a user's script would run
    (no `__future__` imports inherited); check what it prints if it says.

    Tracebacks point at the Markdown file's own line numbers.
    """
    assert block.not_run is None, f"{block.where} is marked not to run"
    source = "\n" * (block.line - 1) + block.code
    code = compile(source, str(block.path), "exec", dont_inherit=True)
    if block.prints is None:
        exec(code, module.__dict__)  # the documentation is trusted project text
        return
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        exec(code, module.__dict__)
    assert captured.getvalue() == block.prints, (
        f"{block.where} prints {captured.getvalue()!r}, the page shows {block.prints!r}"
    )
