"""Command-line options: `--db.host=x`, `--db-host x`, `--flag`, `--no-flag`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from microstd.config.sources.base import Source, nest

__all__ = ["ArgsSource", "args", "parse_args"]


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Parse long options into a flat dict keyed by the option name (dots kept).

    `--key=value` and `--key value` set a string; a bare `--flag` (at the end,
    or followed by another option) is `True` and `--no-flag` is `False`.
    Positional words, short options and everything after `--` are ignored,
    so the program's own argument parser can share `sys.argv`.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":  # noqa: S105 - the end-of-options marker
            break
        if not token.startswith("--") or len(token) == 2:
            continue
        body = token[2:]
        if "=" in body:
            key, value = body.split("=", 1)
            out[key] = value
        elif i < len(argv) and _is_value(argv[i]):
            out[body] = argv[i]
            i += 1
        elif body.startswith("no-") and len(body) > 3:
            out[body[3:]] = False
        else:
            out[body] = True
    return out


def _is_value(token: str) -> bool:
    # "-5" is a value; "-q" and "--next" are options.
    if not token.startswith("-"):
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


class ArgsSource(Source):
    """Options from `argv` (default `sys.argv[1:]`, read at each load)."""

    textual = True
    dashed_keys = True
    local = True

    def __init__(self, argv: Sequence[str] | None = None, *, name: str = "args") -> None:
        super().__init__(name)
        self._argv = None if argv is None else list(argv)

    def read(self) -> dict[str, Any]:
        argv = sys.argv[1:] if self._argv is None else self._argv
        return nest(parse_args(argv), ".", self.name)


def args(argv: Sequence[str] | None = None, *, name: str = "args") -> ArgsSource:
    """Command-line options; `argv=None` reads `sys.argv[1:]`.

    Dots separate levels (`--db.host=x`). A dash also may: with a schema,
    `--db-host` goes to `db.host` or to a field `db_host`, whichever exists;
    without a schema, dashes separate levels.
    """
    return ArgsSource(argv, name=name)


def resolve_dashed(tree: dict[str, Any], schema: Any) -> dict[str, Any]:
    """Place dashed option names (`db-host`) where `schema` has a field for them.

    A key matches a field whose name equals it with `-` read as `_`;
    otherwise a key that starts with a nested field's name and a dash goes
    under that field. Without a matching field (or without a schema), every
    dash separates levels.
    """
    fields = _fields_of(schema)
    out: dict[str, Any] = {}
    for key, value in tree.items():
        target, rest = _place(key, fields)
        if rest:
            sub = {rest: value}
            value_tree = resolve_dashed(sub, fields.get(target) if fields else None)
            existing = out.get(target)
            if isinstance(existing, dict):
                existing.update(value_tree)
            else:
                out[target] = value_tree
            continue
        if isinstance(value, dict):
            value = resolve_dashed(value, fields.get(target) if fields else None)
            existing = out.get(target)
            if isinstance(existing, dict):
                existing.update(value)
                continue
        out[target] = value
    return out


def _place(key: str, fields: dict[str, Any] | None) -> tuple[str, str]:
    if "-" not in key:
        return key, ""
    if fields is None:
        head, rest = key.split("-", 1)
        return head, rest
    under = key.replace("-", "_")
    if under in fields:
        return under, ""
    for name in sorted(fields, key=len, reverse=True):
        dashed = name.replace("_", "-")
        if key.startswith(dashed + "-") and _fields_of(fields[name]) is not None:
            return name, key[len(dashed) + 1 :]
    return under, ""


def _fields_of(schema: Any) -> dict[str, Any] | None:
    import dataclasses
    import typing

    if schema is None:
        return None
    origin = typing.get_origin(schema)
    if origin is not None:
        members = [a for a in typing.get_args(schema) if a is not type(None)]
        if len(members) == 1:
            return _fields_of(members[0])
        return None
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        try:
            hints = typing.get_type_hints(schema)
        except (NameError, TypeError):
            hints = {}
        return {f.name: hints.get(f.name) for f in dataclasses.fields(schema)}
    model_fields = getattr(schema, "model_fields", None)
    if isinstance(model_fields, dict):
        return {name: info.annotation for name, info in model_fields.items()}
    return None
