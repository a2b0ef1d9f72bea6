"""msgpack: the Rust codec against the msgpack package and the pure baseline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections import OrderedDict
from decimal import Decimal

import msgpack
import pytest
from _model import MODEL, PLAIN, Color, Point, expected
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd import _core
from microstd.codec import Ext, Tag, _pure_msgpack
from microstd.codec import msgpack as mp
from microstd.errors import EncodeError

UTC = dt.timezone.utc
IMPLS = {
    "rust": (_core.msgpack_dumps, _core.msgpack_loads),
    "python": (_pure_msgpack.dumps, _pure_msgpack.loads),
}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> tuple:  # type: ignore[type-arg]
    return IMPLS[request.param]


@settings(max_examples=300)
@given(PLAIN)
def test_plain_types_are_byte_identical_to_msgpack_packb(value: object) -> None:
    assert _core.msgpack_dumps(value) == msgpack.packb(value)


@settings(max_examples=300)
@given(MODEL, st.booleans())
def test_rust_and_baseline_write_the_same_bytes(value: object, sort_keys: bool) -> None:
    rust = _core.msgpack_dumps(value, sort_keys=sort_keys)
    assert rust == _pure_msgpack.dumps(value, sort_keys=sort_keys)


@settings(max_examples=300)
@given(MODEL)
def test_round_trip_on_both_impls(value: object) -> None:
    data = _core.msgpack_dumps(value)
    assert _core.msgpack_loads(data) == expected(value)
    assert _pure_msgpack.loads(data) == expected(value)


@pytest.mark.parametrize(
    "value",
    [
        *(0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1),
        *(-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)),
    ],
)
def test_int_widths_match_packb(value: int) -> None:
    assert _core.msgpack_dumps(value) == msgpack.packb(value)
    assert _core.msgpack_loads(_core.msgpack_dumps(value)) == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_ints_outside_64_bits_raise(impl: tuple, value: int) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    with pytest.raises(EncodeError, match="int out of range") as info:
        dumps({"n": [value]})
    assert info.value.path == "$.n[0]"


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(1970, 1, 1, tzinfo=UTC),
        dt.datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC),  # last 32-bit second
        dt.datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),  # first 64-bit one
        dt.datetime(2020, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2514, 5, 30, 1, 53, 3, tzinfo=UTC),  # past 34 bits: 96-bit
        dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2020, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_timestamps_match_packb_datetime_true(impl: tuple, when: dt.datetime) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    data = dumps(when)
    assert data == msgpack.packb(when, datetime=True)
    back = loads(data)
    assert back == when
    assert back.tzinfo == UTC


def test_naive_datetime_is_refused_with_a_hint(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    with pytest.raises(EncodeError, match="attach a tzinfo") as info:
        dumps({"at": dt.datetime(2020, 1, 1)})
    assert info.value.path == "$.at"
    assert dumps(dt.datetime(2020, 1, 1), default=lambda o: "naive") == msgpack.packb("naive")


def test_model_types_encode_as_documented(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = [dt.date(2024, 2, 29), u, Decimal("1.50"), Color.RED, Color.BLUE, {3}, frozenset()]
    assert dumps(value) == msgpack.packb(["2024-02-29", str(u), "1.50", "red", 2, [3], []])
    point = Point(y=1.5, x=2)
    assert loads(dumps(point)) == {"y": 1.5, "x": 2, "label": "p"}
    assert list(loads(dumps(point))) == ["y", "x", "label"]


def test_subclasses_encode_as_their_base(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    class S(str):
        pass

    class I(int):  # noqa: E742
        pass

    class L(list):  # type: ignore[type-arg]
        pass

    class IE(enum.IntEnum):
        ONE = 1

    ordered = OrderedDict([("a", 1), ("b", 2)])
    ordered.move_to_end("a")
    value = [S("s"), I(5), L([1]), IE.ONE, ordered, bytearray(b"x"), memoryview(b"yz")]
    assert dumps(value) == msgpack.packb(["s", 5, [1], 1, {"b": 2, "a": 1}, b"x", b"yz"])


def test_ext_round_trips_byte_identically(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    for size in (0, 1, 2, 3, 4, 8, 16, 17, 300, 70000):
        ext = Ext(42, bytes(range(256)) * (size // 256) + bytes(size % 256))
        data = dumps(ext)
        assert data == msgpack.packb(msgpack.ExtType(42, ext.data))
        assert loads(data) == ext
        assert dumps(loads(data)) == data
    foreign = b"\xc7\x03\xfbabc"  # ext 8, reserved code -5
    assert loads(foreign) == Ext(-5, b"abc")
    assert dumps(loads(foreign)) == foreign
    assert dumps(Ext(-128, b"")) == b"\xc7\x00\x80"


def test_cbor_tag_is_refused_unless_default_handles_it(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    with pytest.raises(EncodeError, match="Tag") as info:
        dumps([Tag(1, 2)])
    assert info.value.path == "$[0]"
    assert dumps(Tag(1, 2), default=lambda t: t.value) == b"\x02"


def test_unsupported_objects_name_type_and_path(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    class Widget:
        pass

    with pytest.raises(EncodeError) as info:
        dumps({"items": [{"price": 1}, {"price": 2}, {"price": 3}, {"price": Widget()}]})
    assert info.value.path == "$.items[3].price"
    assert "Widget" in info.value.message
    assert isinstance(info.value, TypeError)
    with pytest.raises(EncodeError) as info:
        dumps({7: {"k": object()}})
    assert info.value.path == "$[7].k"
    with pytest.raises(EncodeError) as info:
        dumps(["\ud800"])
    assert info.value.path == "$[0]"


def test_default_is_called_and_its_result_encoded(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    data = dumps({"m": Money(5)}, default=lambda o: {"cents": o.cents})
    assert data == msgpack.packb({"m": {"cents": 5}})


def test_default_that_never_ends_is_stopped(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    class Box:
        pass

    with pytest.raises(EncodeError, match="nesting"):
        dumps(Box(), default=lambda o: [Box()])


def test_default_errors_pass_through(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    def boom(o: object) -> object:
        raise KeyError("from default")

    with pytest.raises(KeyError, match="from default"):
        dumps([object()], default=boom)


def test_cycles_are_stopped() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nesting"):
        _core.msgpack_dumps(loop)
    deep: object = 1
    for _ in range(_core.MAX_DEPTH):
        deep = [deep]
    assert _core.msgpack_loads(_core.msgpack_dumps(deep)) == deep
    with pytest.raises(EncodeError, match="nesting"):
        _core.msgpack_dumps([deep])


def test_sort_keys_orders_str_keys_by_code_point(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    value = {"b": 1, "aa": 2, "a": {"z": 1, "é": 2, "y": 3}, "B": 4}
    out = loads(dumps(value, sort_keys=True))
    assert list(out) == ["B", "a", "aa", "b"]
    assert list(out["a"]) == ["y", "z", "é"]


def test_sort_keys_orders_mixed_keys_by_encoded_bytes(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    value = {"a": 1, 300: 2, -1: 3, 5: 4, (1, 2): 5, b"k": 6}
    keys = list(loads(dumps(value, sort_keys=True)))
    assert keys == sorted(value, key=lambda k: msgpack.packb(k))
    assert keys == [5, (1, 2), "a", b"k", 300, -1]


def test_dataclass_fields_sorted_when_asked(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl

    @dataclasses.dataclass
    class Rec:
        zeta: int
        alpha: int

    assert list(loads(dumps(Rec(1, 2), sort_keys=True))) == ["alpha", "zeta"]


def test_everything_msgpack_writes_decodes(impl: tuple) -> None:  # type: ignore[type-arg]
    _, loads = impl
    value = {"s": "x" * 40, "b": b"\x00" * 300, "f": 1.5, "l": list(range(20))}
    for data in (
        msgpack.packb(value),
        msgpack.packb(value, use_bin_type=False),  # old raw str, bytes as str
        msgpack.packb(1.5, use_single_float=True),
    ):
        assert loads(data) is not None
    assert loads(msgpack.packb(["abc"], use_bin_type=False)) == ["abc"]
    assert loads(msgpack.packb(1.5, use_single_float=True)) == 1.5


def test_non_str_keys_and_array_keys_decode(impl: tuple) -> None:  # type: ignore[type-arg]
    _, loads = impl
    assert loads(msgpack.packb({1: "a", None: "b", 1.5: "c"})) == {1: "a", None: "b", 1.5: "c"}
    data = b"\x81\x92\x01\x92\x02\x03\xa1v"  # {[1, [2, 3]]: "v"}
    assert loads(data) == {(1, (2, 3)): "v"}
    assert loads(b"\x92\x81\x91\x01\x02\x91\x03") == [{(1,): 2}, [3]]


def test_bytes_like_inputs(impl: tuple) -> None:  # type: ignore[type-arg]
    _, loads = impl
    data = msgpack.packb({"a": [1, 2]})
    assert loads(bytearray(data)) == {"a": [1, 2]}
    assert loads(memoryview(b"\x00" + data)[1:]) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        loads("not bytes")  # type: ignore[arg-type]


def test_key_cache_gives_equal_keys_across_calls() -> None:
    data = msgpack.packb([{"id": i, "name": "n", "k" * 32: 1, "k" * 33: 2} for i in range(50)])
    for _ in range(3):
        out = _core.msgpack_loads(data)
        assert out == msgpack.unpackb(data)
    assert out[0].keys() == {"id", "name", "k" * 32, "k" * 33}


def test_module_functions_use_the_core() -> None:
    assert mp.dumps({"a": 1}, sort_keys=True) == msgpack.packb({"a": 1})
    assert mp.loads(mp.dumps([1, "x"])) == [1, "x"]


def test_default_may_call_dumps_itself(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    nested = dumps([object()], default=lambda o: dumps({"inner": [1]}))
    assert nested == msgpack.packb([msgpack.packb({"inner": [1]})])
    assert dumps({"after": 1}) == msgpack.packb({"after": 1})
