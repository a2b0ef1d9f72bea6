"""Every example of RFC 8949 Appendix A, decoded by both implementations.

Where our encoder produces the example's bytes (preferred serialization), the
value is also encoded back and compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from microstd.codec import Tag, _pure_cbor, cbor
from microstd.codec._cbor_simple import Simple

LOADS: dict[str, Callable[[bytes], object]] = {"rust": cbor.loads, "python": _pure_cbor.loads}
DUMPS: dict[str, Callable[..., bytes]] = {"rust": cbor.dumps, "python": _pure_cbor.dumps}

NAN = float("nan")
INF = float("inf")
UTC = timezone.utc

# (hex, expected value, whether our canonical encoder gives back the same bytes)
APPENDIX_A: list[tuple[str, object, bool]] = [
    ("00", 0, True),
    ("01", 1, True),
    ("0a", 10, True),
    ("17", 23, True),
    ("1818", 24, True),
    ("1819", 25, True),
    ("1864", 100, True),
    ("1903e8", 1000, True),
    ("1a000f4240", 1000000, True),
    ("1b000000e8d4a51000", 1000000000000, True),
    ("1bffffffffffffffff", 18446744073709551615, True),
    ("c249010000000000000000", 18446744073709551616, True),
    ("3bffffffffffffffff", -18446744073709551616, True),
    ("c349010000000000000000", -18446744073709551617, True),
    ("20", -1, True),
    ("29", -10, True),
    ("3863", -100, True),
    ("3903e7", -1000, True),
    ("f90000", 0.0, True),
    ("f98000", -0.0, True),
    ("f93c00", 1.0, True),
    ("fb3ff199999999999a", 1.1, True),
    ("f93e00", 1.5, True),
    ("f97bff", 65504.0, True),
    ("fa47c35000", 100000.0, True),
    ("fa7f7fffff", 3.4028234663852886e38, True),
    ("fb7e37e43c8800759c", 1.0e300, True),
    ("f90001", 5.960464477539063e-8, True),
    ("f90400", 0.00006103515625, True),
    ("f9c400", -4.0, True),
    ("fbc010666666666666", -4.1, True),
    ("f97c00", INF, True),
    ("f97e00", NAN, True),
    ("f9fc00", -INF, True),
    ("fa7f800000", INF, False),
    ("fa7fc00000", NAN, False),
    ("faff800000", -INF, False),
    ("fb7ff0000000000000", INF, False),
    ("fb7ff8000000000000", NAN, False),
    ("fbfff0000000000000", -INF, False),
    ("f4", False, True),
    ("f5", True, True),
    ("f6", None, True),
    # undefined has no Python counterpart: it decodes to None (documented).
    ("f7", None, False),
    ("f0", Simple(16), True),
    ("f8ff", Simple(255), True),
    (
        "c074323031332d30332d32315432303a30343a30305a",
        datetime(2013, 3, 21, 20, 4, 0, tzinfo=UTC),
        False,
    ),
    ("c11a514b67b0", datetime(2013, 3, 21, 20, 4, 0, tzinfo=UTC), True),
    ("c1fb41d452d9ec200000", datetime(2013, 3, 21, 20, 4, 0, 500000, tzinfo=UTC), False),
    ("d74401020304", Tag(23, b"\x01\x02\x03\x04"), True),
    ("d818456449455446", Tag(24, b"dIETF"), True),
    ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", Tag(32, "http://www.example.com"), True),
    ("40", b"", True),
    ("4401020304", b"\x01\x02\x03\x04", True),
    ("60", "", True),
    ("6161", "a", True),
    ("6449455446", "IETF", True),
    ("62225c", '"\\', True),
    ("62c3bc", "\u00fc", True),
    ("63e6b0b4", "\u6c34", True),
    ("64f0908591", "\U00010151", True),
    ("80", [], True),
    ("83010203", [1, 2, 3], True),
    ("8301820203820405", [1, [2, 3], [4, 5]], True),
    (
        "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
        list(range(1, 26)),
        True,
    ),
    ("a0", {}, True),
    ("a201020304", {1: 2, 3: 4}, True),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}, True),
    ("826161a161626163", ["a", {"b": "c"}], True),
    (
        "a56161614161626142616361436164614461656145",
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        True,
    ),
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05", False),
    ("7f657374726561646d696e67ff", "streaming", False),
    ("9fff", [], False),
    ("9f018202039f0405ffff", [1, [2, 3], [4, 5]], False),
    ("9f01820203820405ff", [1, [2, 3], [4, 5]], False),
    ("83018202039f0405ff", [1, [2, 3], [4, 5]], False),
    ("83019f0203ff820405", [1, [2, 3], [4, 5]], False),
    (
        "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
        list(range(1, 26)),
        False,
    ),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}, False),
    ("826161bf61626163ff", ["a", {"b": "c"}], False),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}, False),
]


def same(a: object, b: object) -> bool:
    """Equality that also tells NaN from NaN, -0.0 from 0.0 and int from float."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("impl", ["rust", "python"])
@pytest.mark.parametrize(("hexdata", "expected", "round_trips"), APPENDIX_A)
def test_appendix_a_decodes(impl: str, hexdata: str, expected: object, round_trips: bool) -> None:
    decoded = LOADS[impl](bytes.fromhex(hexdata))
    assert same(decoded, expected), f"{hexdata} -> {decoded!r}, want {expected!r}"


@pytest.mark.parametrize("impl", ["rust", "python"])
@pytest.mark.parametrize(
    ("hexdata", "expected"), [(h, v) for h, v, rt in APPENDIX_A if rt], ids=lambda x: str(x)
)
def test_appendix_a_canonical_encodes_back(impl: str, hexdata: str, expected: object) -> None:
    assert DUMPS[impl](expected, canonical=True).hex() == hexdata


def test_bigfloat_and_decimal_fraction_of_section_3_4_4() -> None:
    # 273.15 as a decimal fraction, 1.5 as a bigfloat (RFC 8949 section 3.4.4).
    for loads in LOADS.values():
        assert loads(bytes.fromhex("c48221196ab3")) == Decimal("273.15")
        assert loads(bytes.fromhex("c5822003")) == Decimal("1.5")
