"""Parsing JSON, YAML and TOML documents, with the line and column of any error."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from microstd.config.limits import check_document, check_tree
from microstd.errors import ConfigError

__all__ = ["FORMATS", "format_for", "parse_document"]

FORMATS = {
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
}
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def format_for(path: str) -> str:
    """The format named by a file's extension; `ConfigError` for an unknown one."""
    lower = path.lower()
    for ext, fmt in FORMATS.items():
        if lower.endswith(ext):
            return fmt
    known = ", ".join(sorted(FORMATS))
    raise ConfigError(f"{path}: unknown configuration file type (known: {known})")


def parse_document(text: str, fmt: str, where: str) -> dict[str, Any]:
    """Parse `text` as `fmt` ("json", "yaml", "toml"); the top level must be a mapping.

    A malformed document raises `ConfigError` naming `where`, the line and
    the column (both 1-based).
    """
    check_document(text, where)
    if fmt == "json":
        data = _json(text, where)
    elif fmt == "yaml":
        data = _yaml(text, where)
    elif fmt == "toml":
        data = _toml(text, where)
    else:
        raise ConfigError(f"{where}: unknown format {fmt!r} (known: json, yaml, toml)")
    if data is None:
        return {}
    # Before the source does anything with it (interpolation walks the tree too).
    check_tree(data, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, not {type(data).__name__}")
    return data


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid JSON: nested too deeply") from None


def _yaml(text: str, where: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            f"{where}: YAML support needs PyYAML (pip install 'microstd[config]')"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is None:
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
        line, col = mark.line + 1, mark.column + 1
        raise ConfigError(
            f"{where}:{line}:{col}: invalid YAML: {problem} (line {line}, column {col})"
        ) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{where}: invalid YAML: {type(exc).__name__}") from None


def _toml(text: str, where: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
        except ImportError:
            raise ConfigError(
                f"{where}: TOML on Python 3.10 needs tomli (pip install 'microstd[config]')"
            ) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        match = _TOML_POS.search(msg)
        if line is None and match:
            line, col = int(match.group(1)), int(match.group(2))
        problem = _TOML_POS.sub("", msg).strip()
        if line is None:
            raise ConfigError(f"{where}: invalid TOML: {problem}") from None
        raise ConfigError(
            f"{where}:{line}:{col}: invalid TOML: {problem} (line {line}, column {col})"
        ) from None
