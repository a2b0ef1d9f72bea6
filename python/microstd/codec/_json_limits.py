"""Per-call limits for JSON, checked on the text after it decoded: the pure
twin of `rust/src/codec/json_limits.rs` (same errors, same offsets).

JSON declares no lengths and its input is bounded by its own size, so one
pass over the valid text after the decode is enough, and it knows each
item's byte offset. The error is msgpack's, for the violation that starts
first in the text (a container's count is known only at its close but wins
over anything inside it; at one offset the depth wins over the count). A
str counts the UTF-8 bytes of its decoded value; object keys are strs.
"""

from __future__ import annotations

import json as _stdjson
import re

from microstd.codec._limits import Limits
from microstd.errors import DecodeError

__all__ = ["check", "limits"]

# Strings (whole) and the structural bytes; numbers, literals, colons and
# whitespace are skipped by `finditer`.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.S)
_SPACE = b" \t\n\r"


def limits(
    max_container_len: int | None, max_str_len: int | None, max_depth: int | None
) -> Limits | None:
    """The limits of one `loads` call (validated as msgpack's), or None if none is set.

    `max_depth` is used as given, not capped at msgpack's 256: JSON's own
    bound is orjson's (1024 levels).
    """
    checked = Limits(max_container_len, max_str_len, max_depth)
    return checked if checked.given else None


def check(text: bytes, limits: Limits) -> None:
    """Raise `DecodeError` if an item of `text` (JSON that decoded) breaks `limits`."""
    open_at: list[tuple[int, bool]] = []  # (start, is_map) of each open container
    commas: list[int] = []
    first: tuple[int, str] | None = None
    depth_limit = limits.max_depth
    prev_open_end = -1  # where the last `[` or `{` token ended, if it was the last token

    def offer(start: int, message: str | None) -> None:
        nonlocal first
        if message is not None and (first is None or start < first[0]):
            first = (start, message)

    for m in _TOKENS.finditer(text):
        tok = m.group()
        start = m.start()
        b = tok[0]
        if b == 0x5B or b == 0x7B:  # [ {
            if depth_limit is not None and len(open_at) >= depth_limit:
                offer(start, f"nesting deeper than {depth_limit} levels")
            open_at.append((start, b == 0x7B))
            commas.append(0)
            prev_open_end = m.end()
            continue
        if b == 0x5D or b == 0x7D:  # ] }
            if open_at:
                at, is_map = open_at.pop()
                n = commas.pop()
                empty = prev_open_end >= 0 and not text[prev_open_end:start].strip(_SPACE)
                offer(at, limits.container("map" if is_map else "array", 0 if empty else n + 1))
        elif b == 0x2C:  # ,
            if commas:
                commas[-1] += 1
        else:
            n = len(tok) - 2 if b"\\" not in tok else _decoded_len(tok)
            offer(start, limits.string("str", n))
        prev_open_end = -1
    if first is not None:
        raise DecodeError(first[1], first[0])


def _decoded_len(token: bytes) -> int:
    """The UTF-8 length of a JSON string token's value."""
    value: str = _stdjson.loads(token)
    return len(value.encode("utf-8", "surrogatepass"))
