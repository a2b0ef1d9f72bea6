"""Durations written as text: `"5s"`, `"250ms"`, `"1h30m"`, `"1.5d"` into `timedelta`."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d|w)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")
# A bound on the parsed text keeps a hostile value from costing anything.
_MAX_LEN = 64


def parse_duration(text: str) -> timedelta:
    """Parse `text` as a duration.

    Accepts Go-style sequences of number-unit pairs (`"1h30m"`, `"250ms"`,
    `"1.5s"`, units ns, us/µs, ms, s, m, h, d, w) with an optional sign, and a
    bare number meaning seconds. Raises `ValueError` on anything else.
    """
    s = text.strip().lower()
    if not s or len(s) > _MAX_LEN:
        raise ValueError(f"not a duration: {text!r}")
    if _NUMBER.fullmatch(s):
        return timedelta(seconds=float(s))
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    pos = 0
    total = 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            raise ValueError(f"not a duration: {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"not a duration: {text!r}")
    try:
        return timedelta(seconds=sign * total)
    except OverflowError as exc:
        raise ValueError(f"duration out of range: {text!r}") from exc
