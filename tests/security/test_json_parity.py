"""The orjson path and the stdlib twin agree on overflowing numbers and lone
surrogates: both raise the same DecodeError (the stricter of the two behaviours)."""

from __future__ import annotations

import pytest

from microstd.codec import json
from microstd.errors import DecodeError

REFUSED = [
    (b"1e400", "number is infinity when parsed as double", 0),
    (b"[1, -1.5E309]", "number is infinity when parsed as double", 4),
    (b"[1e4004.1 5]", "number is infinity when parsed as double", 1),  # found by fuzzing
    (b'{"a": "1e999", "b": 1e999}', "number is infinity when parsed as double", 20),
    (b"1" * 400, "number is infinity when parsed as double", 0),
    (b"-" + b"9" * 5000, "number is infinity when parsed as double", 0),
    (b'"\\ud800"', "no low surrogate in string", 1),
    (b'["ab\\uDBFF"]', "no low surrogate in string", 4),
    (b'"\\ud800\\u0041"', "invalid low surrogate in string", 1),
    (b'{"k\\udc00": 1}', "invalid high surrogate in string", 3),
    ('["\u00e9\\ud800"]'.encode(), "no low surrogate in string", 4),
]
ACCEPTED = [
    (b"123456789012345678901234567890", 1.2345678901234568e29),  # beyond 64 bits: a float
    (b"18446744073709551615", 2**64 - 1),
    (b"-9223372036854775809", -9.223372036854776e18),
    (b"1e308", 1e308),
    (b'"\\ud83d\\ude00"', "\U0001f600"),
    (b'"\\\\ud800"', "\\ud800"),  # an escaped backslash, not an escape
]


@pytest.mark.parametrize("loads", [json.loads, json.pure_loads], ids=["orjson", "pure"])
@pytest.mark.parametrize(("data", "message", "offset"), REFUSED)
def test_both_paths_refuse_the_same(loads: object, data: bytes, message: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        loads(data)  # type: ignore[operator]
    assert (info.value.message, info.value.offset) == (message, offset)


@pytest.mark.parametrize("loads", [json.loads, json.pure_loads], ids=["orjson", "pure"])
@pytest.mark.parametrize(("data", "value"), ACCEPTED)
def test_both_paths_accept_the_same(loads: object, data: bytes, value: object) -> None:
    assert loads(data) == value  # type: ignore[operator]


@pytest.mark.parametrize("loads", [json.loads, json.pure_loads], ids=["orjson", "pure"])
def test_a_str_holding_a_lone_surrogate_is_refused(loads: object) -> None:
    with pytest.raises(DecodeError):
        loads('["\ud800"]')  # type: ignore[operator]
