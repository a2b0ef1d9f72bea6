"""The CBOR type model, canonical encoding and encode errors, on both implementations."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from microstd import codec
from microstd.codec import Ext, Tag, _pure_cbor, cbor
from microstd.codec._cbor_simple import Simple
from microstd.errors import EncodeError

UTC = timezone.utc
IMPLS = ["rust", "python"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dumps(impl: str) -> Callable[..., bytes]:
    return cbor.dumps if impl == "rust" else _pure_cbor.dumps


@pytest.fixture
def loads(impl: str) -> Callable[[bytes | bytearray | memoryview], object]:
    return cbor.loads if impl == "rust" else _pure_cbor.loads


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Item:
    name: str
    price: Decimal
    tags: list[str]


# (value, non-canonical hex, what it decodes to)
MODEL: list[tuple[object, str, object]] = [
    (None, "f6", None),
    (True, "f5", True),
    (0, "00", 0),
    (-1, "20", -1),
    (2**64 - 1, "1bffffffffffffffff", 2**64 - 1),
    (2**64, "c249010000000000000000", 2**64),
    (-(2**64) - 1, "c349010000000000000000", -(2**64) - 1),
    (1.5, "fb3ff8000000000000", 1.5),
    ("ü", "62c3bc", "ü"),
    (b"\x00", "4100", b"\x00"),
    (bytearray(b"ab"), "426162", b"ab"),
    (memoryview(b"ab"), "426162", b"ab"),
    ([1, "a"], "820161 61".replace(" ", ""), [1, "a"]),
    ((1, 2), "820102", [1, 2]),
    ({"a": 1}, "a1616101", {"a": 1}),
    (OrderedDict(b=1), "a1616201", {"b": 1}),
    ({(1, 2): "t"}, "a1820102617" + "4", {(1, 2): "t"}),
    (
        datetime(2013, 3, 21, 20, 4, tzinfo=UTC),
        "c11a514b67b0",
        datetime(2013, 3, 21, 20, 4, tzinfo=UTC),
    ),
    (
        datetime(2013, 3, 21, 22, 4, 0, 500000, tzinfo=timezone(timedelta(hours=2))),
        "c1fb41d452d9ec200000",
        datetime(2013, 3, 21, 20, 4, 0, 500000, tzinfo=UTC),
    ),
    (date(2020, 1, 2), "d864194757", date(2020, 1, 2)),
    (date(1969, 12, 31), "d86420", date(1969, 12, 31)),
    (uuid.UUID(int=5), "d82550" + "00" * 15 + "05", uuid.UUID(int=5)),
    (Decimal("273.15"), "c48221196ab3", Decimal("273.15")),
    (Decimal("-1e30"), "c482181e20", Decimal("-1e30")),
    (Color.RED, "63726564", "red"),
    (Level.HIGH, "03", 3),
    ({1, 2}, "d90102820102", {1, 2}),
    (frozenset(), "d9010280", set()),
    (Tag(42, "x"), "d82a6178", Tag(42, "x")),
    (Simple(16), "f0", Simple(16)),
    (
        Item("pen", Decimal("1.5"), ["x"]),
        "",
        {"name": "pen", "price": Decimal("1.5"), "tags": ["x"]},
    ),
]


@pytest.mark.parametrize(("value", "hexdata", "decoded"), MODEL, ids=repr)
def test_type_model(
    dumps: Callable[..., bytes],
    loads: Callable[[bytes], object],
    value: object,
    hexdata: str,
    decoded: object,
) -> None:
    data = dumps(value)
    if hexdata:
        assert data.hex() == hexdata
    result = loads(data)
    assert result == decoded
    assert type(result) is type(decoded)


def test_decimal_specials_are_floats(dumps: Callable[..., bytes]) -> None:
    assert dumps(Decimal("NaN")).hex() == "f97e00"
    assert dumps(Decimal("-Infinity")).hex() == "f9fc00"
    assert dumps(Decimal("Infinity")).hex() == "f97c00"
    assert dumps(Decimal("-0")).hex() == "c4820000"


def test_set_members_decode_hashable(loads: Callable[[bytes], object]) -> None:
    # A set holding an array and a set: members become a tuple and a frozenset.
    value = loads(bytes.fromhex("d9010282820102d9010281" + "01"))
    assert value == {(1, 2), frozenset({1})}
    # A set used as a map key is a frozenset.
    assert loads(bytes.fromhex("a1d901028101f6")) == {frozenset({1}): None}


def test_tag_0_keeps_the_offset(loads: Callable[[bytes], object]) -> None:
    data = cbor.dumps(Tag(0, "2013-03-21T20:04:00.25+02:00"))
    assert loads(data) == datetime(
        2013, 3, 21, 20, 4, 0, 250000, tzinfo=timezone(timedelta(hours=2))
    )


def test_date_tag_1004_decodes(loads: Callable[[bytes], object]) -> None:
    assert loads(cbor.dumps(Tag(1004, "1940-10-09"))) == date(1940, 10, 9)


def test_bigfloat_decodes_exactly(loads: Callable[[bytes], object]) -> None:
    smallest = loads(cbor.dumps(Tag(5, [-1074, 1])))
    assert smallest == Decimal((0, tuple(int(d) for d in str(5**1074)), -1074))
    assert float(smallest) == 5e-324
    exact = loads(cbor.dumps(Tag(5, [-30, 3])))
    assert exact == Decimal(3 * 5**30) * Decimal(10) ** -30
    assert loads(cbor.dumps(Tag(5, [100, -1]))) == Decimal(-(2**100))


def test_unknown_tags_round_trip_byte_identically(
    dumps: Callable[..., bytes], loads: Callable[[bytes], object]
) -> None:
    for hexdata in ["d81e820103", "d9d9f7a161610c", "db00000001000000008100", "d823616e"]:
        value = loads(bytes.fromhex(hexdata))
        assert isinstance(value, Tag)
        assert dumps(value).hex() == hexdata


def test_loads_accepts_buffers(loads: Callable[[bytes | bytearray | memoryview], object]) -> None:
    assert loads(bytearray(b"\x83\x01\x02\x03")) == [1, 2, 3]
    assert loads(memoryview(b"\x00\x83\x01\x02\x03")[1:]) == [1, 2, 3]
    with pytest.raises(TypeError):
        loads("83010203")  # type: ignore[arg-type]


# -- canonical (RFC 8949 section 4.2.1)

CANONICAL: list[tuple[object, str]] = [
    # Keys sorted by their encoded bytes: 10, 100, -1, "z", "aa", [100], [-1], false.
    (
        {False: 8, "aa": 5, 100: 2, -1: 3, (-1,): 7, "z": 4, 10: 1, (100,): 6},
        "a80a011864022003617a0462616105811864068120" + "07f408",
    ),
    ({"b": 1, "a": 2}, "a2616102616201"),
    ({3, 1, 2}, "d90102830102" + "03"),
    (1.5, "f93e00"),
    (100000.0, "fa47c35000"),
    (1.1, "fb3ff199999999999a"),
    (-0.0, "f98000"),
    (datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC), "c1f93800"),
    ([{"b": {"d": 1, "c": 2}, "a": 0}], "81a2616100616" + "2a2616302616401"),
]


@pytest.mark.parametrize(("value", "hexdata"), CANONICAL, ids=repr)
def test_canonical_vectors(dumps: Callable[..., bytes], value: object, hexdata: str) -> None:
    assert dumps(value, canonical=True).hex() == hexdata


def test_canonical_ignores_insertion_order(dumps: Callable[..., bytes]) -> None:
    a = {"x": [1, {"q": 1, "p": 2}], 5: None, b"k": 1.0}
    b = {b"k": 1.0, 5: None, "x": [1, {"p": 2, "q": 1}]}
    assert dumps(a, canonical=True) == dumps(b, canonical=True)
    assert dumps(a) != dumps(b)


# -- encode errors


def test_naive_datetime_is_refused(dumps: Callable[..., bytes]) -> None:
    with pytest.raises(EncodeError, match="tzinfo") as info:
        dumps({"when": datetime(2020, 1, 1)})
    assert isinstance(info.value, TypeError)


def test_unknown_type_names_type_and_path() -> None:
    with pytest.raises(EncodeError) as info:
        cbor.dumps({"items": [1, 2, 3, {"price": Fraction(1, 3)}]})
    assert "fractions.Fraction" in info.value.message
    assert info.value.path == "$.items[3].price"


def test_unknown_type_is_an_encode_error_in_the_baseline_too() -> None:
    for value in [Fraction(1, 3), object(), Ext(1, b"x"), 1j]:
        with pytest.raises(EncodeError, match="default="):
            _pure_cbor.dumps([value])
        with pytest.raises(EncodeError, match="default="):
            cbor.dumps([value])


def test_default_converts_what_the_model_lacks(dumps: Callable[..., bytes]) -> None:
    def default(obj: object) -> object:
        if isinstance(obj, Fraction):
            return [obj.numerator, obj.denominator]
        if isinstance(obj, Ext):
            return Tag(1000 + obj.code, obj.data)
        raise TypeError(f"no conversion for {obj!r}")

    assert dumps({"f": Fraction(1, 3)}, default=default).hex() == "a16166820103"
    assert dumps(Ext(1, b"x"), default=default).hex() == "d903e94178"
    with pytest.raises(TypeError, match="no conversion"):
        dumps(object(), default=default)


def test_default_recursion_is_bounded() -> None:
    class Loop:
        pass

    with pytest.raises(EncodeError, match="nesting"):
        cbor.dumps(Loop(), default=lambda obj: Loop())


def test_nesting_limit_is_symmetric() -> None:
    from microstd import _core

    deep: list[object] = []
    for _ in range(_core.MAX_DEPTH - 1):
        deep = [deep]
    assert cbor.loads(cbor.dumps(deep)) == deep
    with pytest.raises(EncodeError, match="nesting"):
        cbor.dumps([deep])
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError, match="nesting"):
        cbor.dumps(cyclic)


def test_lone_surrogate_is_refused(dumps: Callable[..., bytes]) -> None:
    with pytest.raises(EncodeError, match="surrogate"):
        dumps(["\ud800"])


def test_registry_serves_both_implementations() -> None:
    rust = codec.get("application/cbor")
    python = codec.get("application/cbor", impl="python")
    value = {"a": [1, 2.5, None], "b": date(2020, 1, 2)}
    assert rust.dumps(value) == python.dumps(value)
    assert rust.loads(python.dumps(value)) == value


def test_epoch_floats_match_cbor2_to_the_bit() -> None:
    # Rounding cases: a negative timestamp with a fraction (total microseconds
    # / 10**6, correctly rounded) and a far-future one whose fraction rounds
    # away entirely (then the integer is written).
    near = datetime(1970, 1, 1, 2, 54, 58, 999996, tzinfo=timezone(timedelta(seconds=10500)))
    far = datetime(5618, 2, 14, 6, 40, 40, 999999, tzinfo=timezone(timedelta(minutes=-648)))
    assert cbor.dumps(near).hex() == "c1fbbff0000431bde82d"
    assert cbor.dumps(far).hex() == "c11b0000001acde79749"
    for value in (near, far):
        for canonical in (False, True):
            assert cbor.dumps(value, canonical=canonical) == _pure_cbor.dumps(
                value, canonical=canonical
            )


def test_baseline_errors_carry_the_same_paths() -> None:
    class Gadget:
        pass

    cases: list[object] = [
        {"items": [1, {"price": Gadget()}]},
        [{"x": datetime(2020, 1, 1)}],
        {"k": ["ok", "\ud800"]},
        Item("pen", Decimal(1), ["a", Gadget()]),  # type: ignore[list-item]
        [{Gadget()}],
    ]
    for value in cases:
        with pytest.raises(EncodeError) as rust:
            cbor.dumps(value)
        with pytest.raises(EncodeError) as python:
            _pure_cbor.dumps(value)
        assert python.value.path == rust.value.path != "$"
