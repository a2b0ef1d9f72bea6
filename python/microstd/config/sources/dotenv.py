"""`.env` files: `KEY=value` lines, read like environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microstd.config.interpolate import interpolate
from microstd.config.sources._watch import watch_paths
from microstd.config.sources.base import Source
from microstd.config.sources.env import env_tree
from microstd.config.sources.file import read_text
from microstd.errors import ConfigError

__all__ = ["DotenvSource", "dotenv", "parse_dotenv"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str, where: str) -> dict[str, str]:
    """Parse `.env` text into a flat dict.

    Supports `export KEY=value`, `#` comments (also after an unquoted value,
    separated by whitespace), single quotes (literal), double quotes (with
    `\\n`-style escapes, may span lines) and `${VAR:-default}` expansion in
    unquoted and double-quoted values. A malformed line raises `ConfigError`
    naming the file, line and column.
    """
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        raw = lines[i]
        i += 1
        stripped = raw.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(stripped)
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            after = stripped[6:].lstrip()
            indent += len(stripped) - len(after)
            stripped = after
        m = _KEY.match(stripped)
        if m is None:
            raise ConfigError(
                f"{where}:{lineno}:{indent + 1}: invalid .env line: expected KEY=value "
                f"(line {lineno}, column {indent + 1})"
            )
        key = m.group(0)
        rest = stripped[m.end() :].lstrip()
        if not rest.startswith("="):
            col = indent + m.end() + 1
            raise ConfigError(
                f"{where}:{lineno}:{col}: invalid .env line: expected '=' after {key} "
                f"(line {lineno}, column {col})"
            )
        value = rest[1:].lstrip()
        col = indent + len(stripped) - len(value) + 1
        if value.startswith("'"):
            end = value.find("'", 1)
            if end < 0:
                raise _unterminated(where, lineno, col)
            out[key] = value[1:end]
            _check_tail(value[end + 1 :], where, lineno, col + end + 1)
        elif value.startswith('"'):
            body, tail, consumed = _double_quoted(value, lines, i, where, lineno, col)
            i += consumed
            out[key] = interpolate(body, f"{where}:{lineno}", _merged_env(out))
            _check_tail(tail, where, lineno, col)
        else:
            hash_at = re.search(r"\s#", value)
            if hash_at:
                value = value[: hash_at.start()]
            out[key] = interpolate(value.rstrip(), f"{where}:{lineno}", _merged_env(out))
    return out


def _merged_env(earlier: dict[str, str]) -> dict[str, str]:
    # Later lines may refer to earlier ones, and the process environment wins like in the shell.
    merged = dict(earlier)
    merged.update(os.environ)
    return merged


def _unterminated(where: str, line: int, col: int) -> ConfigError:
    return ConfigError(
        f"{where}:{line}:{col}: invalid .env line: unterminated quoted value "
        f"(line {line}, column {col})"
    )


def _check_tail(tail: str, where: str, line: int, col: int) -> None:
    t = tail.strip()
    if t and not t.startswith("#"):
        raise ConfigError(
            f"{where}:{line}:{col}: invalid .env line: text after the closing quote "
            f"(line {line}, column {col})"
        )


def _double_quoted(
    value: str, lines: list[str], nxt: int, where: str, line: int, col: int
) -> tuple[str, str, int]:
    text = value[1:]
    consumed = 0
    chars: list[str] = []
    while True:
        j = 0
        while j < len(text):
            c = text[j]
            if c == "\\" and j + 1 < len(text):
                chars.append(_ESCAPES.get(text[j + 1], "\\" + text[j + 1]))
                j += 2
                continue
            if c == '"':
                return "".join(chars), text[j + 1 :], consumed
            chars.append(c)
            j += 1
        if nxt + consumed >= len(lines):
            raise _unterminated(where, line, col)
        chars.append("\n")
        text = lines[nxt + consumed]
        consumed += 1


class DotenvSource(Source):
    """A `.env` file, keys filtered by `prefix` and nested on `separator` like `env()`."""

    textual = True
    local = True

    def __init__(
        self,
        path: str | os.PathLike[str] = ".env",
        *,
        prefix: str = "",
        separator: str = "__",
        optional: bool = False,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.prefix = prefix
        self.separator = separator
        super().__init__(name or f"dotenv:{self.path}", optional=optional)

    def read(self) -> dict[str, Any]:
        flat = parse_dotenv(read_text(self.path), str(self.path))
        return env_tree(flat, self.prefix, self.separator, self.name)

    def changes(self) -> AsyncIterator[None]:
        return watch_paths([self.path])


def dotenv(
    path: str | os.PathLike[str] = ".env",
    *,
    prefix: str = "",
    separator: str = "__",
    optional: bool = False,
    name: str | None = None,
) -> DotenvSource:
    """A `.env` file; `DB__HOST=x` sets `db.host` (after stripping `prefix`)."""
    return DotenvSource(path, prefix=prefix, separator=separator, optional=optional, name=name)
