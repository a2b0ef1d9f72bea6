"""Subject validation, matching and the subscription trie, in pure Python.

The same rules as the Rust core (`rust/src/broker/subjects.rs`): dot-separated
non-empty tokens without whitespace; in a pattern `*` matches exactly one
part and `>` (last only) one or more trailing tokens. Used by the pure twin
and by the Redis backend's filter.
"""

from __future__ import annotations

import re

from microstd.errors import InvalidTopic

__all__ = ["MAX_SUBJECT_LEN", "Trie", "matches", "validate_pattern", "validate_subject"]

MAX_SUBJECT_LEN = 4096

_WHITESPACE = re.compile(r"\s")


def _check_common(subject: object, what: str) -> list[str]:
    if not isinstance(subject, str):
        raise InvalidTopic(f"{what} must be a str, got {type(subject).__name__}")
    if not subject:
        raise InvalidTopic(f"{what} must not be empty")
    if len(subject.encode()) > MAX_SUBJECT_LEN:
        raise InvalidTopic(f"{what} is longer than {MAX_SUBJECT_LEN} bytes")
    if _WHITESPACE.search(subject):
        raise InvalidTopic(f"{what} {subject!r} contains whitespace")
    tokens = subject.split(".")
    if "" in tokens:
        raise InvalidTopic(f"{what} {subject!r} has an empty token")
    return tokens


def validate_subject(subject: object) -> list[str]:
    """The tokens of a concrete publish subject, or `InvalidTopic`."""
    tokens = _check_common(subject, "topic")
    if "*" in tokens or ">" in tokens:
        raise InvalidTopic(
            f"topic {subject!r} contains a wildcard; wildcards are for subscriptions"
        )
    return tokens


def validate_pattern(pattern: object) -> list[str]:
    """The tokens of a subscription pattern, or `InvalidTopic`."""
    tokens = _check_common(pattern, "pattern")
    if ">" in tokens[:-1]:
        raise InvalidTopic(f"pattern {pattern!r}: '>' must be the last token")
    return tokens


def matches(pattern: str, subject: str) -> bool:
    """True if the concrete `subject` matches `pattern` (both already valid)."""
    subj = subject.split(".")
    pat = pattern.split(".")
    for i, part in enumerate(pat):
        if part == ">":
            return len(subj) > i
        if i >= len(subj) or (part != "*" and part != subj[i]):
            return False
    return len(subj) == len(pat)


class _Node:
    __slots__ = ("here", "literal", "star", "tail")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.here: list[int] = []
        self.tail: list[int] = []

    def empty(self) -> bool:
        return not (self.literal or self.star or self.here or self.tail)


class Trie:
    """Patterns mapped to integer ids; `find` lists the ids a subject matches."""

    __slots__ = ("_root",)

    def __init__(self) -> None:
        self._root = _Node()

    def insert(self, tokens: list[str], ident: int) -> None:
        node = self._root
        for part in tokens:
            if part == ">":
                node.tail.append(ident)
                return
            if part == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                child = node.literal.get(part)
                if child is None:
                    child = node.literal[part] = _Node()
                node = child
        node.here.append(ident)

    def remove(self, tokens: list[str], ident: int) -> bool:
        return self._remove(self._root, tokens, 0, ident)

    def _remove(self, node: _Node, tokens: list[str], i: int, ident: int) -> bool:
        if i == len(tokens):
            return _take(node.here, ident)
        part = tokens[i]
        if part == ">":
            return _take(node.tail, ident)
        child = node.star if part == "*" else node.literal.get(part)
        if child is None:
            return False
        found = self._remove(child, tokens, i + 1, ident)
        if child.empty():
            if part == "*":
                node.star = None
            else:
                del node.literal[part]
        return found

    def find(self, tokens: list[str]) -> list[int]:
        out: list[int] = []
        self._find(self._root, tokens, 0, out)
        return out

    def _find(self, node: _Node, tokens: list[str], i: int, out: list[int]) -> None:
        if i == len(tokens):
            out.extend(node.here)
            return
        if node.tail:
            out.extend(node.tail)
        child = node.literal.get(tokens[i])
        if child is not None:
            self._find(child, tokens, i + 1, out)
        if node.star is not None:
            self._find(node.star, tokens, i + 1, out)


def _take(ids: list[int], ident: int) -> bool:
    try:
        ids.remove(ident)
    except ValueError:
        return False
    return True
