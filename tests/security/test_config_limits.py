"""Configuration documents cannot exhaust the stack, memory or time: deep
nesting, YAML alias bombs and huge documents are a ConfigError of their source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microstd import config
from microstd.config.limits import MAX_DEPTH, MAX_DOCUMENT_CHARS, check_document
from microstd.errors import ConfigError


def _nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        tree = {"n": tree}
    return tree


DEEP = {
    "deep.json": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "deep.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "deep.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "fairly-deep.json": '{"a": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}",
    "fairly-deep.toml": "a = " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_documents_are_config_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(DEEP[name])
    with pytest.raises(ConfigError) as info:
        config.load(sources=[config.file(str(path))])
    assert name in str(info.value)
    assert "deep" in str(info.value)


def test_nesting_within_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text('{"a": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "}")
    assert "a" in config.load(sources=[config.file(str(path))]).value


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # 9 lines standing for 10^9 values: expanded by interpolation or the merge,
    # this ran for minutes and grew without bound.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases"):
        config.load(sources=[config.file(str(path))])


def test_any_source_is_checked() -> None:
    with pytest.raises(ConfigError, match=f"deeper than {MAX_DEPTH}"):
        config.load(sources=[_nested(MAX_DEPTH + 2)])


def test_an_optional_source_that_is_too_deep_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(DEEP["deep.json"])
    cfg = config.load(sources=[{"kept": 1}, config.file(str(path), optional=True)])
    assert cfg.value == {"kept": 1}


def test_huge_documents_are_refused() -> None:
    with pytest.raises(ConfigError, match="characters"):
        check_document(" " * (MAX_DOCUMENT_CHARS + 1), "doc")
