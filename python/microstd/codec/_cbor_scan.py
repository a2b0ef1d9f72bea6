"""The per-call limits of the pure CBOR twin: a walk over the item's heads,
run before cbor2 decodes it, that refuses what the Rust decoder refuses, with
the same messages and offsets (cbor2 has no such limits).

It stops quietly at anything malformed: cbor2 then reports that error, as the
Rust decoder reports the first problem it meets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from microstd.codec._limits import Limits, type_name
from microstd.errors import DecodeError

__all__ = ["check_limits"]

_TEXT, _BYTES, _ARRAY, _MAP, _TAG = 3, 2, 4, 5, 6


class _Stop(Exception):
    """Malformed or truncated input: cbor2 will say what."""


class _Walk:
    def __init__(
        self, data: bytes, limits: Limits, item: Callable[[bytes, int], tuple[object, int]]
    ) -> None:
        self.data = data
        self.limits = limits
        self.item = item  # decodes one item at an offset: (value, end)

    def fail(self, message: str | None, at: int) -> None:
        if message is not None:
            raise DecodeError(message, at)

    def head(self, pos: int) -> tuple[int, int, int | None, int]:
        """(major, additional info, argument or None if indefinite, position after)."""
        if pos >= len(self.data):
            raise _Stop
        ib = self.data[pos]
        major, ai = ib >> 5, ib & 0x1F
        if ai < 24:
            return major, ai, ai, pos + 1
        if ai == 31:
            return major, ai, None, pos + 1
        if ai > 27:
            raise _Stop
        width = 1 << (ai - 24)
        if pos + 1 + width > len(self.data):
            raise _Stop
        return (
            major,
            ai,
            int.from_bytes(self.data[pos + 1 : pos + 1 + width], "big"),
            pos + 1 + width,
        )

    def walk(self, pos: int, depth: int) -> int:
        start = pos
        major, _, arg, pos = self.head(pos)
        if major in (_BYTES, _TEXT):
            what = "str" if major == _TEXT else "bytes"
            if arg is not None:
                self.fail(self.limits.string(what, arg), start)
                return pos + arg
            total = 0
            while True:
                if pos >= len(self.data):
                    raise _Stop
                if self.data[pos] == 0xFF:
                    self.fail(self.limits.string(what, total), start)
                    return pos + 1
                _, _, n, pos = self.head(pos)
                if n is None:
                    raise _Stop
                total += n
                pos += n
        if major == _ARRAY:
            self.fail(self.limits.depth(depth), start)
            if arg is not None:
                self.fail(self.limits.container("array", arg), start)
                for _ in range(arg):
                    pos = self.walk(pos, depth + 1)
                return pos
            count = 0
            while pos < len(self.data) and self.data[pos] != 0xFF:
                count += 1
                self.fail(self.limits.container("array", count), start)
                pos = self.walk(pos, depth + 1)
            return pos + 1
        if major == _MAP:
            self.fail(self.limits.depth(depth), start)
            seen: set[object] = set()
            if arg is not None:
                self.fail(self.limits.container("map", arg), start)
                for _ in range(arg):
                    pos = self.entry(pos, depth + 1, seen)
                return pos
            count = 0
            while pos < len(self.data) and self.data[pos] != 0xFF:
                count += 1
                self.fail(self.limits.container("map", count), start)
                pos = self.entry(pos, depth + 1, seen)
            return pos + 1
        if major == _TAG:
            self.fail(self.limits.depth(depth), start)
            return self.walk(pos, depth + 1)
        if major == 7 and arg is None:
            raise _Stop  # a stray break
        return pos

    def entry(self, pos: int, depth: int, seen: set[object]) -> int:
        key_at = pos
        end = self.walk(pos, depth)
        if self.limits.strict_keys or self.limits.unique_keys:
            try:
                key, _ = self.item(self.data, key_at)
            except DecodeError:
                raise _Stop from None
            if self.limits.strict_keys and type(key) not in (str, int):
                name = type_name(key)
                self.fail(f"map key of type {name} is not a str or int (strict_keys)", key_at)
            if self.limits.unique_keys:
                if key in seen:
                    self.fail(f"duplicate map key {key!r} (unique_keys)", key_at)
                seen.add(key)
        return self.walk(end, depth)


def check_limits(
    data: bytes, start: int, limits: Limits, item: Callable[[bytes, int], tuple[object, int]]
) -> None:
    """Raise `DecodeError` for the first limit the item at `start` breaks."""
    with contextlib.suppress(_Stop, RecursionError):
        _Walk(data, limits, item).walk(start, 0)
