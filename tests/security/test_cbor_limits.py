"""CBOR tags 4 and 5 cannot make the decoder build a huge Decimal, in either codec."""

from __future__ import annotations

import enum
from collections.abc import Callable
from decimal import Decimal

import pytest

from microstd import _core
from microstd.codec import _pure_cbor
from microstd.errors import DecodeError, EncodeError

LOADS: dict[str, Callable[[bytes], object]] = {
    "rust": _core.cbor_loads,
    "pure": _pure_cbor.loads,
}
DUMPS: dict[str, Callable[[object], bytes]] = {
    "rust": _core.cbor_dumps,
    "pure": _pure_cbor.dumps,
}


@pytest.fixture(params=sorted(LOADS))
def loads(request: pytest.FixtureRequest) -> Callable[[bytes], object]:
    return LOADS[request.param]


@pytest.fixture(params=sorted(DUMPS))
def dumps(request: pytest.FixtureRequest) -> Callable[[object], bytes]:
    return DUMPS[request.param]


def _uint(n: int) -> bytes:
    """A CBOR unsigned integer head (major type 0) for `n` < 2**64."""
    return bytes([0x1B]) + n.to_bytes(8, "big")


def _nint(n: int) -> bytes:
    """CBOR for the negative integer -1 - n."""
    return bytes([0x3B]) + n.to_bytes(8, "big")


def _bignum(magnitude: int) -> bytes:
    raw = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "big")
    return b"\xc2\x5a" + len(raw).to_bytes(4, "big") + raw


def _tagged(tag: int, exponent: bytes, mantissa: bytes) -> bytes:
    return bytes([0xC0 | tag, 0x82]) + exponent + mantissa


def test_the_limits_are_the_same_in_both_codecs() -> None:
    assert _pure_cbor.MAX_EXPONENT == 4096
    assert _pure_cbor.MAX_MANTISSA_BITS == 16384


@pytest.mark.parametrize("tag", [4, 5])
def test_a_huge_mantissa_is_refused_at_the_tag(loads: Callable[[bytes], object], tag: int) -> None:
    # 100 KB of mantissa: turning it into a Decimal took about a second before
    # the cap, and a megabyte would take minutes.
    data = _tagged(tag, b"\x00", _bignum(2 ** (8 * 100_000) - 1))
    with pytest.raises(DecodeError) as info:
        loads(data)
    assert "mantissa" in info.value.message
    assert "16384 bits" in info.value.message
    # The Rust codec points at the tag; the cbor2 baseline at where it stopped.
    assert 0 <= info.value.offset <= len(data)


@pytest.mark.parametrize("tag", [4, 5])
@pytest.mark.parametrize("exponent", [_uint(10**18), _nint(10**18), _uint(4097), _nint(4096)])
def test_an_absurd_exponent_is_refused(
    loads: Callable[[bytes], object], tag: int, exponent: bytes
) -> None:
    # int(Decimal("1e999999")) alone takes half a minute.
    data = _tagged(tag, exponent, b"\x01")
    with pytest.raises(DecodeError) as info:
        loads(data)
    assert "exponent is beyond +-4096" in info.value.message
    assert 0 <= info.value.offset <= len(data)


def test_values_at_the_limits_still_decode(loads: Callable[[bytes], object]) -> None:
    top = 2**16384 - 1
    assert loads(_tagged(4, _uint(4096), b"\x01")) == Decimal("1e4096")
    assert loads(_tagged(4, b"\x39\x0f\xff", b"\x01")) == Decimal("1e-4096")
    assert loads(_tagged(4, b"\x00", _bignum(top))) == Decimal(top)
    # 3 * 2^-4096 == 3 * 5^4096 * 10^-4096, exactly.
    assert loads(_tagged(5, b"\x39\x0f\xff", b"\x03")) == Decimal(
        (0, Decimal(3 * 5**4096).as_tuple().digits, -4096)
    )


def test_plain_bignums_are_not_capped(loads: Callable[[bytes], object]) -> None:
    # int.from_bytes is linear in the input, so a bignum is only bounded by it.
    big = 2 ** (8 * 1_000_000) - 1
    assert loads(_bignum(big)) == big


def test_the_encoder_refuses_what_the_decoder_would(dumps: Callable[[object], bytes]) -> None:
    for value in (Decimal("1e5000"), Decimal("1e-5000"), Decimal("9" * 5000)):
        with pytest.raises(EncodeError) as info:
            dumps({"price": value})
        assert info.value.path == "$.price"
        assert "decimal fraction" in info.value.message
    for value in (Decimal("1e4096"), Decimal("9" * 4932)):
        assert LOADS["rust"](dumps(value)) == value


class _Four(enum.Enum):
    FOUR = 4


@pytest.mark.parametrize("value", [{4: "a", _Four.FOUR: "b"}, {4, _Four.FOUR}])
def test_canonical_refuses_keys_that_encode_alike(
    dumps: Callable[..., bytes], value: object
) -> None:
    # Duplicate keys are a parser-differential hazard (which one wins depends on
    # the decoder); deterministic CBOR forbids them.
    with pytest.raises(EncodeError, match="same bytes"):
        dumps(value, canonical=True)
    dumps(value)  # the plain encoding writes both, as cbor2 does
