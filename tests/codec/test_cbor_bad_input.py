"""Malformed CBOR: every case is a DecodeError at the right byte, never a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd import _core
from microstd.codec import _pure_cbor, cbor
from microstd.errors import DecodeError

MAX_DEPTH: int = _core.MAX_DEPTH

# (hex, offset the Rust decoder reports, words the message contains)
BAD: list[tuple[str, int, str]] = [
    ("", 0, "truncated"),
    ("18", 1, "truncated"),
    ("1a0001", 3, "truncated"),
    ("830102", 0, "array of 3 items"),
    ("a1616101a0", 4, "trailing"),
    ("0000", 1, "trailing"),
    ("5a7fffffff00", 0, "length 2147483647"),
    ("9bffffffffffffffff00", 0, "array of"),
    ("bb7fffffffffffffff0000", 0, "map of"),
    ("7b0000000100000000", 0, "length"),
    ("1c", 0, "reserved"),
    ("9d", 0, "reserved"),
    ("fe", 0, "reserved"),
    ("ff", 0, "break"),
    ("8201ff", 2, "break"),
    ("a1ff", 0, "map of 1"),
    ("1f", 0, "indefinite"),
    ("3f", 0, "indefinite"),
    ("df00", 0, "indefinite"),
    ("62c328", 1, "UTF-8"),
    ("61ff", 1, "UTF-8"),
    ("7f61c3ff", 2, "UTF-8"),  # a chunk that cuts a character in two
    ("5f6161ff", 1, "chunk"),
    ("7f4161ff", 1, "chunk"),
    ("5f5f4161ffff", 1, "chunk"),
    ("9f01", 2, "no break"),
    ("5f4161", 3, "no break"),
    ("f818", 0, "simple value 24"),
    ("c1f97e00", 0, "tag 1"),
    ("c16161", 0, "tag 1"),
    ("c06161", 0, "tag 0"),
    ("c06a323032302d31332d3031", 0, "tag 0"),
    ("c26161", 0, "bignum"),
    ("c48201", 1, "array of 2"),
    ("c48301020304", 0, "tag 4"),
    ("c582f60f", 0, "tag 5"),
    ("c5821b0000000100000000" + "01", 0, "bigfloat (tag 5) exponent"),
    ("c5823b7fffffffffffffff01", 0, "bigfloat (tag 5) exponent"),
    ("d8254401020304", 0, "tag 37"),
    ("d8646161", 0, "tag 100"),
    ("d8641b7fffffffffffffff", 0, "tag 100"),
    ("d903ec6a323032302d31332d3031", 0, "tag 1004"),
    ("d9010201", 0, "tag 258"),
    ("a1a0f6", 1, "map key"),
    ("d9010281a0", 4, "set member"),
]


@pytest.mark.parametrize(("hexdata", "offset", "words"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_rust_reports_the_offset(hexdata: str, offset: int, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        cbor.loads(bytes.fromhex(hexdata))
    assert info.value.offset == offset
    assert words in info.value.message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("hexdata", "offset", "words"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_baseline_rejects_the_same(hexdata: str, offset: int, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        _pure_cbor.loads(bytes.fromhex(hexdata))
    assert 0 <= info.value.offset <= len(hexdata) // 2


def _nested(prefix: str, depth: int, leaf: str = "00") -> bytes:
    return bytes.fromhex(prefix * depth + leaf)


@pytest.mark.parametrize("prefix", ["81", "9f", "a100", "d82a", "c6"])
def test_nesting_limit(prefix: str) -> None:
    # Indefinite arrays need their breaks after the leaf.
    closing = "ff" if prefix == "9f" else ""
    ok = _nested(prefix, MAX_DEPTH) + bytes.fromhex(closing * MAX_DEPTH)
    cbor.loads(ok)
    too_deep = _nested(prefix, MAX_DEPTH + 1) + bytes.fromhex(closing * (MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="nesting") as info:
        cbor.loads(too_deep)
    assert info.value.offset == MAX_DEPTH * len(bytes.fromhex(prefix))


def test_deep_input_does_not_crash_the_baseline() -> None:
    with pytest.raises(DecodeError):
        _pure_cbor.loads(_nested("81", 100_000))


def test_huge_declared_lengths_allocate_nothing() -> None:
    # A 9-byte header claiming 2**64-1 items of each kind is refused up front.
    for head in ["5b", "7b", "9b", "bb"]:
        with pytest.raises(DecodeError, match="left"):
            cbor.loads(bytes.fromhex(head + "ff" * 8))


@pytest.mark.parametrize("loads", [cbor.loads, _pure_cbor.loads], ids=["rust", "python"])
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_random_bytes_give_a_value_or_a_decode_error(
    loads: Callable[[bytes], object], data: bytes
) -> None:
    try:
        loads(data)
    except DecodeError as exc:
        offset = exc.offset
    else:
        return
    assert 0 <= offset <= len(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=48))
def test_random_bytes_both_implementations_agree(data: bytes) -> None:
    """Both accept (with equal values) or both reject."""
    outcomes = []
    for loads in (cbor.loads, _pure_cbor.loads):
        try:
            outcomes.append(("ok", repr(loads(data))))
        except DecodeError:
            outcomes.append(("error", ""))
    assert outcomes[0] == outcomes[1]
