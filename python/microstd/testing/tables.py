"""The bad-argument tables of the contract: each row is a bad value, the exception
class every backend must raise for it, and the exact message.

The rules behind them live in `microstd._validate`; every area, backend, Rust
core and pure twin applies them, so one table holds everywhere.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from microstd.errors import InvalidArgument, InvalidKey, InvalidTopic, MicrostdError

__all__ = [
    "BAD_LOCK_NAMES",
    "BAD_PATTERNS",
    "BAD_SERVICE_NAMES",
    "BAD_STORE_KEYS",
    "BAD_TOPICS",
    "BAD_TTLS",
    "BAD_WAITS",
    "NO_TTL",
    "Row",
    "bad_names",
    "ids",
    "raises",
]

#: (bad value, exception class, exact message)
Row = tuple[object, type[MicrostdError], str]

_TTL_TYPE = "ttl must be a number of seconds, got {}"
_TTL_VALUE = "ttl must be a finite number of seconds > 0, got {}"

#: Bad ttls: the same in every area that takes a ttl.
BAD_TTLS: list[Row] = [
    ("10", InvalidArgument, _TTL_TYPE.format("str")),
    (True, InvalidArgument, _TTL_TYPE.format("bool")),
    (b"1", InvalidArgument, _TTL_TYPE.format("bytes")),
    ([1], InvalidArgument, _TTL_TYPE.format("list")),
    (0, InvalidArgument, _TTL_VALUE.format("0")),
    (0.0, InvalidArgument, _TTL_VALUE.format("0.0")),
    (-1, InvalidArgument, _TTL_VALUE.format("-1")),
    (-2.5, InvalidArgument, _TTL_VALUE.format("-2.5")),
    (math.nan, InvalidArgument, _TTL_VALUE.format("nan")),
    (math.inf, InvalidArgument, _TTL_VALUE.format("inf")),
    (-math.inf, InvalidArgument, _TTL_VALUE.format("-inf")),
    (-(10**30), InvalidArgument, _TTL_VALUE.format(-(10**30))),
    (10**400, InvalidArgument, _TTL_VALUE.format(10**400)),
]

#: A lock lease always expires: `None` is a bad ttl there.
NO_TTL: Row = (None, InvalidArgument, _TTL_TYPE.format("NoneType"))

_WAIT_TYPE = "wait must be None or a number of seconds, got {}"
_WAIT_VALUE = "wait must be None or a finite number of seconds >= 0, got {}"

#: Bad lock and election waits.
BAD_WAITS: list[Row] = [
    ("1", InvalidArgument, _WAIT_TYPE.format("str")),
    (False, InvalidArgument, _WAIT_TYPE.format("bool")),
    (-1, InvalidArgument, _WAIT_VALUE.format("-1")),
    (-0.5, InvalidArgument, _WAIT_VALUE.format("-0.5")),
    (math.nan, InvalidArgument, _WAIT_VALUE.format("nan")),
    (math.inf, InvalidArgument, _WAIT_VALUE.format("inf")),
]


def bad_names(what: str) -> list[Row]:
    """Bad keys or names of a kind, named in the plural: "store keys", "lock names"."""
    return [
        ("", InvalidKey, f"{what} must not be empty"),
        (1, InvalidKey, f"{what} are str, got int"),
        (None, InvalidKey, f"{what} are str, got NoneType"),
        (b"key", InvalidKey, f"{what} are str, got bytes"),
        (("a",), InvalidKey, f"{what} are str, got tuple"),
        ("a\ud800b", InvalidKey, f"{what} must be valid Unicode (no lone surrogates)"),
    ]


_SERVICE_PATTERN = (
    "service names are dot-separated tokens of [A-Za-z0-9_-] (at most 200 characters), got {}"
)

BAD_STORE_KEYS = bad_names("store keys")
BAD_LOCK_NAMES = bad_names("lock names")
BAD_SERVICE_NAMES: list[Row] = [
    *bad_names("service names"),
    ("bad name*", InvalidKey, _SERVICE_PATTERN.format("'bad name*'")),
    ("a..b", InvalidKey, _SERVICE_PATTERN.format("'a..b'")),
]
BAD_TOPICS: list[Row] = [
    ("", InvalidTopic, "topic must not be empty"),
    (1, InvalidTopic, "topic must be a str, got int"),
    ("a..b", InvalidTopic, "topic 'a..b' has an empty token"),
    ("a b", InvalidTopic, "topic 'a b' contains whitespace"),
    ("it's.x y", InvalidTopic, 'topic "it\'s.x y" contains whitespace'),
    ("a.*", InvalidTopic, "topic 'a.*' contains a wildcard; wildcards are for subscriptions"),
]
BAD_PATTERNS: list[Row] = [
    ("", InvalidTopic, "pattern must not be empty"),
    ("a..b", InvalidTopic, "pattern 'a..b' has an empty token"),
    ("a.>.b", InvalidTopic, "pattern 'a.>.b': '>' must be the last token"),
]


def ids(rows: list[Row]) -> list[str]:
    """Readable test ids for a table's rows."""
    return [repr(value)[:24] for value, _, _ in rows]


def raises(cls: type[Exception], message: str) -> Any:
    """`pytest.raises` for exactly this class (or a subclass) and exactly this message."""
    return pytest.raises(cls, match=f"^{re.escape(message)}$")
