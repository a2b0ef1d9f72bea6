"""msgpack decoding of bad input: a DecodeError with the right offset, never a crash."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd import _core
from microstd.codec import _pure_msgpack
from microstd.errors import DecodeError

IMPLS = {"rust": _core.msgpack_loads, "python": _pure_msgpack.loads}
DEPTH = _core.MAX_DEPTH


@pytest.fixture(params=sorted(IMPLS))
def loads(request: pytest.FixtureRequest) -> object:
    return IMPLS[request.param]


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"", 0, "unexpected end of data"),
        (b"\x92\x01", 0, "array of 2 items is longer than the 1 bytes left"),
        (b"\x92\x01\x92", 2, "array of 2 items"),
        (b"\x93\x01\xcd\x01", 2, "truncated uint16"),
        (b"\xa5abc", 0, "truncated str"),
        (b"\xc4\x05ab", 0, "truncated bin"),
        (b"\xd9", 0, "truncated str header"),
        (b"\xcb\x00\x00", 0, "truncated float64"),
        (b"\xd6\x05\x00", 0, "truncated ext"),
        (b"\x01\x02", 1, "trailing data"),
        (b"\x91\x01\xc0\xc0", 2, "trailing data"),
        (b"\xc1", 0, "reserved type byte 0xc1"),
        (b"\x92\x01\xc1", 2, "reserved type byte 0xc1"),
        (b"\xa3a\xffb", 2, "invalid UTF-8"),
        (b"\x81\xa2\xc3\x28\x01", 2, "invalid UTF-8"),
        (b"\xdd\xff\xff\xff\xff", 0, "array of 4294967295 items"),
        (b"\xdf\xff\xff\xff\xff\x01\x01", 0, "map of 4294967295 pairs"),
        (b"\xdb\xff\xff\xff\xff", 0, "truncated str: needs 4294967295 bytes"),
        (b"\xc6\xff\xff\xff\xff\x00", 0, "truncated bin: needs 4294967295 bytes"),
        (b"\xc9\xff\xff\xff\xff\x05", 0, "truncated ext: needs 4294967295 bytes"),
        (b"\x81\x80\x01", 1, "map key of type dict is not hashable"),
        (b"\x91\x81\x91\x80\x01", 2, "map key of type tuple is not hashable"),
        (b"\xd5\xff\x00\x00", 0, "timestamp extension must carry 4, 8 or 12 bytes"),
        (b"\xd7\xff" + b"\xff" * 8, 0, "nanoseconds out of range"),
    ],
)
def test_bad_input_names_the_offset(loads, data: bytes, offset: int, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError, match=message) as info:
        loads(data)
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)


def test_nesting_limit_is_max_depth() -> None:
    # MAX_DEPTH containers nest; one more is refused, at the offset of that one.
    ok = b"\x91" * DEPTH + b"\x01"
    assert _core.msgpack_loads(ok) is not None
    with pytest.raises(DecodeError, match="nesting deeper") as info:
        _core.msgpack_loads(b"\x91" * (DEPTH + 1) + b"\x01")
    assert info.value.offset == DEPTH
    with pytest.raises(DecodeError, match="nesting deeper"):
        _core.msgpack_loads(b"\x81\x01" * (DEPTH + 1) + b"\x01")


def test_very_deep_nesting_fails_on_both(loads) -> None:  # type: ignore[no-untyped-def]
    # The baseline's own limit is the package's (1024), so go past both.
    with pytest.raises(DecodeError):
        loads(b"\x91" * 5000 + b"\x01")


def test_huge_declared_lengths_fail_fast() -> None:
    # A 4 GiB promise in a few bytes must be refused before allocating anything.
    for header in (b"\xdd", b"\xdf", b"\xdb", b"\xc6"):
        with pytest.raises(DecodeError):
            _core.msgpack_loads(header + b"\xff\xff\xff\xff" + b"\x00" * 10)


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data: bytes) -> None:
    for loads in IMPLS.values():
        with contextlib.suppress(DecodeError):
            loads(data)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_rust_and_baseline_agree_on_random_bytes(data: bytes) -> None:
    outcomes = []
    for loads in IMPLS.values():
        try:
            outcomes.append(("ok", loads(data)))
        except DecodeError as exc:
            outcomes.append(("error", exc.offset))
    if outcomes[0][0] == "ok" and outcomes[1][0] == "ok":
        # NaN never equals itself: compare the re-encoded bytes instead.
        assert _core.msgpack_dumps(outcomes[0][1]) == _core.msgpack_dumps(outcomes[1][1])
    else:
        assert outcomes[0] == outcomes[1]


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=200))
def test_every_truncation_of_valid_data_is_a_decode_error(tail: bytes) -> None:
    data = msgpack.packb({"k": [1, 2.5, "x" * 40, tail, {"n": None}]})
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _core.msgpack_loads(data[:cut])
