"""Int leaves of the typed JSON reader (scanned and accumulated in one pass,
up to 19 digits; longer tokens take the general path): every length around
the 19 and 20 digit edges, the 64-bit limits, leading zeros, signs, and
tokens that are not ints. The core must answer as the pure twin does."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from microstd import codec
from microstd.codec import typed
from microstd.codec._plan import plan_for
from microstd.errors import DecodeError


@dataclasses.dataclass
class Row:
    id: int
    n: int = 0


def _twin(tp: Any, data: bytes) -> Any:
    loads = codec.get("application/json", impl="python").loads
    return typed.run_plan(plan_for(tp), loads(data), strings=True, impl="python")


def _outcome(decode: Any, data: bytes) -> object:
    try:
        value = decode(data)
    except DecodeError:
        return ("error",)
    return ("ok", value, type(value))


def _tokens() -> list[bytes]:
    out = [b"0", b"-0", b"7", b"-7", b"01", b"-01", b"00", b"-", b"", b"+1"]
    for n in range(1, 23):
        out.append(b"9" * n)
        out.append(b"-" + b"9" * n)
        out.append(b"1" + b"0" * (n - 1))
    out += [
        b"18446744073709551615",  # the largest u64: 20 digits
        b"18446744073709551616",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"1.5",
        b"1.0",
        b"1e5",
        b"1E5",
        b"-2e-3",
        b"12abc",
        b"12 ",
        b"1234567890123456789.5",
    ]
    return out


@pytest.mark.parametrize("token", _tokens())
def test_int_leaves_answer_as_the_twin(token: bytes) -> None:
    for tp, data in (
        (int, token),
        (Row, b'{"id":' + token + b',"n":1}'),
        (Row, b'{"n":2,"id":' + token + b"}"),
        (list[int], b"[" + token + b"," + token + b"]"),
    ):
        core = _outcome(codec.json.Decoder(tp).decode, data)
        assert core == _outcome(lambda d, tp=tp: _twin(tp, d), data), (tp, data)
