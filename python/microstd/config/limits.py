"""Bounds on what a configuration source may hand over.

Configuration can come from places an attacker may write to (a Redis key, an
etcd prefix, a mounted file), so every source's tree is checked before it is
merged: a document too large, nested too deeply (the merge, interpolation and
binding all recurse) or expanding to too many values (YAML aliases make a few
hundred bytes stand for millions of nodes) is a `ConfigError` of that source,
never a RecursionError, an out-of-memory or a stall.
"""

from __future__ import annotations

from typing import Any

from microstd.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_CHARS", "MAX_VALUES", "check_document", "check_tree"]

#: Deepest nesting of mappings and lists in one source's tree.
MAX_DEPTH = 64
#: Most values (mappings, lists and scalars, counted each time they are reached).
MAX_VALUES = 1_000_000
#: Largest configuration document parsed, in characters.
MAX_DOCUMENT_CHARS = 16 * 1024 * 1024


def check_document(text: str, where: str) -> None:
    """`ConfigError` when a document is too large to parse."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise ConfigError(
            f"{where}: the document has {len(text)} characters, more than {MAX_DOCUMENT_CHARS}"
        )


def check_tree(data: Any, where: str) -> None:
    """`ConfigError` when `data` nests deeper than MAX_DEPTH or holds more than
    MAX_VALUES values. Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{where}: more than {MAX_VALUES} values (YAML aliases expanding?)")
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
