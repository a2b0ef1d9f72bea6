"""Typed decoding: `loads(data, type=T)`, `convert(obj, T)`, `Decoder(T)`, on
the Rust core and on the pure twin (same results, same errors)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Optional, Union

import pytest
from _outcome import decode_outcome
from _typed_models import (
    Base,
    Book,
    Bounded,
    Checked,
    Child,
    Color,
    Frozen,
    Item,
    Level,
    Movie,
    Node,
    Point,
    Price,
    Shapes,
    Stamped,
)

from microstd import _accel, codec
from microstd.codec import typed
from microstd.codec._plan import compile_type, plan_for
from microstd.errors import DecodeError, ValidationError

IMPLS = ["python"] + (["rust"] if _accel.core is not None else [])
FORMATS = ["msgpack", "cbor", "json"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def conv(obj: object, tp: Any, impl: str, *, strings: bool = True, forbid: bool = False) -> Any:
    return typed.run_plan(
        plan_for(tp), obj, strings=strings, forbid_unknown_fields=forbid, impl=impl
    )


def refused(obj: object, tp: Any, impl: str, **kw: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        conv(obj, tp, impl, **kw)
    return info.value


ITEM = {"sku": "A-1", "qty": 3, "price": {"amount": 9.5}, "tags": ["x"], "color": "red"}


def test_nested_dataclasses(impl: str) -> None:
    item = conv(ITEM, Item, impl)
    assert item == Item("A-1", 3, Price(9.5, "EUR"), ["x"], Color.RED)
    assert conv({"sku": "b", "qty": 1, "price": {"amount": 1}}, Item, impl) == Item(
        "b", 1, Price(1.0)
    )
    # Defaults from factories are fresh per instance.
    a = conv({"sku": "b", "qty": 1, "price": {"amount": 1}}, Item, impl)
    b = conv({"sku": "b", "qty": 1, "price": {"amount": 1}}, Item, impl)
    assert a.tags == []
    assert a.tags is not b.tags


def test_errors_name_path_expected_and_found(impl: str) -> None:
    bad = {**ITEM, "price": {"amount": "9.5"}}
    err = refused(bad, Item, impl)
    assert isinstance(err, DecodeError)
    assert err.path == "$.price.amount"
    assert err.expected == "float"
    assert err.found == "str '9.5'"
    assert str(err) == "expected float, got str '9.5' at $.price.amount"
    err = refused([ITEM, {**ITEM, "tags": ["a", 7]}], list[Item], impl)
    assert err.path == "$[1].tags[1]"
    assert err.expected == "str"
    assert err.found == "int 7"
    err = refused({"sku": "A", "price": {"amount": 1}}, Item, impl)
    assert err.message == "missing required field 'qty'"
    assert err.path == "$"


def test_strict_scalars(impl: str) -> None:
    assert refused("7", int, impl).found == "str '7'"
    assert refused(True, int, impl).expected == "int"
    assert refused(1, bool, impl).expected == "bool"
    assert refused(1, str, impl).expected == "str"
    assert conv(3, float, impl) == 3.0
    assert type(conv(3, float, impl)) is float
    assert refused(True, float, impl).expected == "float"
    assert refused(None, int, impl).found == "None"
    assert conv(None, Optional[int], impl) is None  # noqa: UP045


def test_unknown_fields_ignored_or_refused(impl: str) -> None:
    data = {**ITEM, "extra": 1}
    assert conv(data, Item, impl).sku == "A-1"
    err = refused(data, Item, impl, forbid=True)
    assert err.message == "unknown field 'extra'"
    assert err.path == "$"
    err = refused({"title": "t", "x": 1}, Book, impl, forbid=True)
    assert err.message == "unknown field 'x'"


def test_dataclass_variants(impl: str) -> None:
    f = conv({"a": 1, "b": [1, 2]}, Frozen, impl)
    assert f == Frozen(1, (1, 2))
    assert isinstance(f.b, tuple)
    c = conv({"id": 1, "name": "n", "level": 2}, Child, impl)
    assert c == Child(id=1, name="n", level=Level.HIGH)
    assert isinstance(c, Base)
    assert refused({"id": 1, "name": "n", "level": 3}, Child, impl).path == "$.level"
    assert conv({"n": 4}, Checked, impl) == Checked(4, 8)


def test_recursive_types(impl: str) -> None:
    tree = {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]}
    assert conv(tree, Node, impl) == Node(1, [Node(2, [Node(3)])])
    bad = {"value": 1, "children": [{"value": 2, "children": [{"value": "3"}]}]}
    assert refused(bad, Node, impl).path == "$.children[0].children[0].value"


def test_typeddicts(impl: str) -> None:
    assert conv({"title": "t"}, Movie, impl) == {"title": "t"}
    assert conv({"title": "t", "year": 1999, "x": 1}, Movie, impl) == {"title": "t", "year": 1999}
    assert refused({"year": 1999}, Movie, impl).message == "missing required field 'title'"
    assert conv({"title": "t"}, Book, impl) == {"title": "t"}
    assert refused({"title": "t", "pages": "9"}, Book, impl).path == "$.pages"


def test_named_tuples(impl: str) -> None:
    p = conv([1, 2], Point, impl)
    assert p == Point(1, 2, "")
    assert type(p) is Point
    assert conv([1, 2, "a"], Point, impl) == Point(1, 2, "a")
    err = refused([1], Point, impl)
    assert err.expected == "array of 2 to 3"
    assert err.found == "array of 1"
    assert refused([1, "2"], Point, impl).path == "$[1]"


def test_containers_literals_unions(impl: str) -> None:
    data = {
        "kind": "a",
        "value": None,
        "pair": [1, "x"],
        "bag": [1, 2, 2],
        "frozen": ["a"],
        "table": {"k": [1]},
        "by_id": {1: "one"},
    }
    s = conv(data, Shapes, impl)
    assert s == Shapes("a", None, (1, "x"), {1, 2}, frozenset({"a"}), {"k": [1]}, {1: "one"})
    assert conv({**data, "value": 5}, Shapes, impl).value == 5
    assert conv({**data, "value": "5"}, Shapes, impl).value == "5"
    assert refused({**data, "value": 5.5}, Shapes, impl).expected == "int | str | None"
    assert refused({**data, "kind": "c"}, Shapes, impl).path == "$.kind"
    assert refused({**data, "pair": [1]}, Shapes, impl).expected == "array of 2"
    assert refused({**data, "by_id": {"1": "one"}}, Shapes, impl).path == "$.by_id.1"


def test_enums(impl: str) -> None:
    assert conv("blue", Color, impl) is Color.BLUE
    assert conv(2, Level, impl) is Level.HIGH
    assert refused(True, Level, impl).expected == "Level"
    assert refused("purple", Color, impl).found == "str 'purple'"


def test_wire_forms_of_scalars(impl: str) -> None:
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    uid = uuid.UUID(int=7)
    native = {"at": at, "day": dt.date(2024, 5, 1), "id": uid, "cost": Decimal("1.5"), "blob": b"x"}
    expected = Stamped(at, dt.date(2024, 5, 1), uid, Decimal("1.5"), b"x")
    assert conv(native, Stamped, impl) == expected
    text = {
        "at": "2024-05-01T12:00:00+00:00",
        "day": "2024-05-01",
        "id": str(uid),
        "cost": "1.5",
        "blob": "eA==",
    }
    assert conv(text, Stamped, impl, strings=True) == expected
    # msgpack and CBOR carry datetimes and bytes natively: no strings for them.
    assert refused(text, Stamped, impl, strings=False).path == "$.at"
    assert refused({**native, "blob": "eA=="}, Stamped, impl, strings=False).path == "$.blob"
    assert refused({**text, "at": "2024-05-01T12:00:00"}, Stamped, impl).path == "$.at"


def test_annotated_constraints(impl: str) -> None:
    assert conv({"age": 3, "code": "AB"}, Bounded, impl) == Bounded(3, "AB")
    assert refused({"age": -1, "code": "AB"}, Bounded, impl).expected == ">= 0"
    assert refused({"age": 151, "code": "AB"}, Bounded, impl).expected == "<= 150"
    assert refused({"age": 1, "code": "A"}, Bounded, impl).expected == "length >= 2"
    assert refused({"age": 1, "code": "ABCDE"}, Bounded, impl).expected == "length <= 4"
    assert refused({"age": 1, "code": "ab"}, Bounded, impl).path == "$.code"


def test_any_passes_values_through(impl: str) -> None:
    value = {"a": [1, {"b": None}]}
    assert conv(value, Any, impl) is value
    assert conv(value, dict[str, Any], impl) == value


def test_ambiguous_unions_are_refused_when_built() -> None:
    with pytest.raises(TypeError, match="ambiguous union"):
        compile_type(Union[str, uuid.UUID])  # noqa: UP007
    with pytest.raises(TypeError, match="ambiguous union"):
        compile_type(Union[Item, Movie])  # noqa: UP007
    with pytest.raises(TypeError, match="not a supported type"):
        compile_type(complex)
    compile_type(Union[int, float])  # noqa: UP007 (ints to int, floats to float)


def test_plans_are_cached_per_type() -> None:
    assert plan_for(Item) is plan_for(Item)
    assert plan_for(list[Item]) is plan_for(list[Item])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trips_in_every_format(fmt: str) -> None:
    module = getattr(codec, fmt)
    stamped = Stamped(
        dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc),
        dt.date(2024, 5, 1),
        uuid.UUID(int=99),
        Decimal("12.50"),
        b"\x00\xff",
    )
    values: list[tuple[Any, Any]] = [
        (Item("A-1", 3, Price(9.5, "USD"), ["x"], Color.BLUE), Item),
        (Node(1, [Node(2)]), Node),
        (Frozen(1, (2, 3)), Frozen),
        (Child(id=1, name="n", level=Level.HIGH), Child),
        (Point(1, 2, "p"), Point),
        (stamped, Stamped),
        ([Point(1, 2)], list[Point]),
        ({"title": "t", "pages": 3}, Book),
    ]
    for value, tp in values:
        data = module.dumps(value)
        assert module.loads(data, type=tp) == value, (fmt, value)
        assert module.Decoder(tp).decode(data) == value


def test_decoder_objects_and_convert() -> None:
    decoder = codec.msgpack.Decoder(list[Item], forbid_unknown_fields=True)
    data = codec.msgpack.dumps([ITEM])
    assert decoder.decode(data)[0].price == Price(9.5)
    with pytest.raises(ValidationError):
        decoder.decode(codec.msgpack.dumps([{**ITEM, "x": 1}]))
    assert codec.convert(ITEM, Item).color is Color.RED
    with pytest.raises(TypeError, match="ambiguous"):
        codec.cbor.Decoder(Union[str, uuid.UUID])  # noqa: UP007


def _outcome(value: object, tp: Any, impl: str, strings: bool) -> object:
    try:
        return ("ok", conv(value, tp, impl, strings=strings))
    except ValidationError as err:
        return ("error", err.message, err.path, err.expected, err.found)


@pytest.mark.skipif(_accel.core is None, reason="compares the Rust core with the twin")
def test_rust_and_twin_agree_on_random_values() -> None:
    import random

    rng = random.Random(13)
    leaves: list[object] = [
        None,
        True,
        0,
        7,
        -1,
        2.5,
        "",
        "red",
        "A-1",
        "2024-05-01",
        "2024-05-01T12:00:00+00:00",
        "eA==",
        b"x",
        [],
        {},
        str(uuid.UUID(int=5)),
        "1.5",
    ]

    def value(depth: int) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            return rng.choice(leaves)
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        keys = ["sku", "qty", "price", "amount", "tags", "color", "value", "children", "a", "b"]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(5))}

    types: list[Any] = [Item, Node, Frozen, Point, Movie, Book, Shapes, Stamped, list[Price]]
    types += [dict[str, int], Optional[Color], tuple[int, str], set[int], Bounded]  # noqa: UP045
    for _ in range(3000):
        tp = rng.choice(types)
        v = value(0)
        if isinstance(v, dict) and rng.random() < 0.5:
            v = {**ITEM, **v}
        strings = rng.random() < 0.5
        assert _outcome(v, tp, "rust", strings) == _outcome(v, tp, "python", strings), (tp, v)
        _check_one_pass(v, tp, rng)
        _check_one_pass(v, tp, rng, "cbor")
        _check_json_one_pass(codec.json.dumps(v), tp, rng)


def _check_one_pass(value: object, tp: Any, rng: Any, fmt: str = "msgpack") -> None:
    """The Rust one-pass msgpack (or CBOR) reader against decoding untyped, then
    the twin's convert, on the value's bytes, a truncated copy and one with a
    byte changed. (The untyped decoders' own parity is tested elsewhere.)"""

    data = getattr(codec, fmt).dumps(value)
    variants = [data, data[: rng.randrange(len(data))]]
    changed = bytearray(data)
    changed[rng.randrange(len(data))] = rng.randrange(256)
    variants.append(bytes(changed))
    for forbid in (False, True):
        for raw in variants:
            _check_bytes(raw, tp, fmt, forbid)


def _check_bytes(raw: bytes, tp: Any, fmt: str, forbid: bool = False) -> None:
    from microstd import _core

    untyped = _core.msgpack_loads if fmt == "msgpack" else _core.cbor_loads

    def twin(b: bytes) -> object:
        return typed.run_plan(
            plan_for(tp), untyped(b), strings=False, forbid_unknown_fields=forbid, impl="python"
        )

    one_pass = getattr(codec, fmt).Decoder(tp, forbid_unknown_fields=forbid).decode
    assert decode_outcome(one_pass, raw) == decode_outcome(twin, raw), (tp, raw, forbid)


# CBOR wire forms the encoder never writes: chunked (indefinite-length)
# strings and containers, tags, half floats, `undefined`, big negative ints.
_RFC3339 = b"2024-05-01T12:00:00Z".hex()
CBOR_TEXTS = [
    bytes.fromhex("a26576616c7565016863686964726e656e80"),
    bytes.fromhex("bf6576616c756501ff"),
    bytes.fromhex("a17f6376616c627565ff02"),
    bytes.fromhex("a26576616c756501686368696c6472656e9fa16576616c756503ff"),
    bytes.fromhex("a26576616c75650168636869"),
    bytes.fromhex("a16576616c7565c24101"),
    bytes.fromhex("a16576616c75653bffffffffffffffff"),
    bytes.fromhex("a16576616c7565f93c00"),
    bytes.fromhex("a16576616c7565f7"),
    bytes.fromhex("a26576616c7565016576616c756502"),
    bytes.fromhex("a2657469746c6565616263646564796561721907e8"),
    bytes.fromhex("a2657469746c657f62616263636465ff6479656172f6"),
    bytes.fromhex(f"a3626174c074{_RFC3339}63646179c074{_RFC3339}62696440"),
    bytes.fromhex("a2016474697465657469746c656178"),
    bytes.fromhex("a16576616c75650100"),
]


@pytest.mark.skipif(_accel.core is None, reason="compares the Rust core with the twin")
@pytest.mark.parametrize("raw", CBOR_TEXTS)
def test_cbor_one_pass_matches_the_canonical_path(raw: bytes) -> None:
    for tp in (Node, Movie, _Titled, Optional[float], dict[str, Any], Any, Stamped):  # noqa: UP045
        for forbid in (False, True):
            _check_bytes(raw, tp, "cbor", forbid)


def test_deep_and_cyclic_values_are_validation_errors(impl: str) -> None:
    deep: Any = {"value": 1}
    for _ in range(400):
        deep = {"value": 1, "children": [deep]}
    err = refused(deep, Node, impl)
    assert err.message == "nesting deeper than 256 levels"
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    nested = list[list[list[Any]]]
    assert conv(cyclic, nested, impl)[0][0][0] is cyclic
    loop: dict[str, Any] = {"value": 1}
    loop["children"] = [loop]
    assert refused(loop, Node, impl).message == "nesting deeper than 256 levels"


def test_user_code_errors_pass_through(impl: str) -> None:
    with pytest.raises(ZeroDivisionError):
        conv({"n": 1}, _Exploding, impl)


@dataclasses.dataclass
class _Exploding:
    n: int

    def __post_init__(self) -> None:
        raise ZeroDivisionError


def _check_json_one_pass(data: bytes, tp: Any, rng: Any) -> None:
    """The Rust one-pass JSON reader against orjson, then the twin's convert."""
    from microstd.codec import json as codec_json

    variants = [data, data[: rng.randrange(len(data) + 1)]]
    changed = bytearray(data)
    changed[rng.randrange(len(data))] = rng.choice(b' ,:[]{}"\\0123456789eE.-+tfnu')
    variants.append(bytes(changed))
    plan = plan_for(tp)
    for forbid in (False, True):
        for raw in variants:

            def twin(b: bytes, forbid: bool = forbid) -> object:
                return typed.run_plan(
                    plan,
                    codec_json._untyped_loads(b),
                    strings=True,
                    forbid_unknown_fields=forbid,
                    impl="python",
                )

            one_pass = codec.json.Decoder(tp, forbid_unknown_fields=forbid).decode
            assert decode_outcome(one_pass, raw) == decode_outcome(twin, raw), (tp, raw, forbid)


JSON_TEXTS = [
    rb' {"value": 1, "children": [ {"value": -0}, {"value": 2, "children": []} ] } ',
    rb'{"value": 1e2}',
    rb'{"value": 1.0}',
    rb'{"value": 123456789012345678901234567890}',
    rb'{"value": 9223372036854775807, "children": []}',
    rb'{"value": 18446744073709551615}',
    rb'{"value": -9223372036854775808}',
    rb'{"value": 01}',
    rb'{"value": 1, "value": 2}',
    rb'{"value": 1, "extra": "\u00e9\ud83d\ude00", "more": [1e400]}',
    rb'{"value": 1, "extra": "\ud800"}',
    rb'{"value": 1, "extra": "tab\there", "x": "ctl\u0001"}',
    b'{"value": 1, "extra": "raw control\x01"}',
    rb'{"val\u0075e": 5}',
    b'{"value": 1}\n',
    rb'{"value": 1} x',
    rb"[1, 2]",
    rb'{"value": true}',
    rb'{"value": 1, "children": [{"value": 1, "children": [' * 3 + rb"]}]}" * 3,
    # Strings past the 16-byte blocks the scanner reads: escapes, non-ASCII
    # text and control bytes before, inside and after a block boundary.
    rb'{"title": "0123456789abcdef\\"quoted\\" and more text", "year": 1}',
    '{"title": "0123456789abcdeé東京 0123456789abcdef😀", "year": 2}'.encode(),
    '{"title": "東京\\u00e9 0123456789abcdef\\n0123456789abcdef"}'.encode(),
    b'{"title": "0123456789abcdef0123\x1f456789"}',
    b'{"title": "0123456789abcdef0123456789\xff"}',
    b'{"title": "0123456789abcdef0123456789\xe6\x9d"}',
    rb'{"title": "0123456789abcdef0123456789\\',
    rb'{"title": "0123456789abcdef0123456789',
    b'{"0123456789abcdef\xc3\xa9xyz": 1, "title": "t"}',
]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_json_one_pass_matches_the_canonical_path(text: bytes) -> None:
    from microstd.codec import json as codec_json

    for tp in (Node, dict[str, Any], Any, list[int], Movie, _Titled):
        plan = plan_for(tp)

        def twin(b: bytes, plan: Any = plan) -> object:
            return typed.run_plan(plan, codec_json._untyped_loads(b), strings=True, impl="python")

        got = decode_outcome(codec.json.Decoder(tp).decode, text)
        assert got == decode_outcome(twin, text), (tp, text)


def test_timestamps_as_a_type(impl: str) -> None:
    from _typed_models import Stamp

    from microstd.codec import Timestamp

    exact = Timestamp(1514862245, 678901234)
    assert conv({"at": exact}, Stamp, impl) == Stamp(exact)
    at = dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=dt.timezone.utc)
    assert conv({"at": at}, Stamp, impl).at == Timestamp.from_datetime(at)
    text = {"at": "2018-01-02T03:04:05.678901234Z", "maybe": None}
    assert conv(text, Stamp, impl) == Stamp(exact)
    assert refused(text, Stamp, impl, strings=False).expected == "Timestamp"
    assert refused({"at": 5}, Stamp, impl).found == "int 5"


@pytest.mark.parametrize("fmt", FORMATS)
def test_timestamps_round_trip_typed(fmt: str) -> None:
    from _typed_models import Stamp

    from microstd.codec import Timestamp

    module = getattr(codec, fmt)
    value = Stamp(Timestamp(1514862245, 678901234), Timestamp(-62_167_219_200))
    if fmt == "json":
        value = Stamp(Timestamp(1514862245, 678901234))  # JSON text has no year 0
    if fmt == "cbor":
        value = Stamp(Timestamp(1514862245), Timestamp(-62_167_219_200))  # whole seconds
    assert module.loads(module.dumps(value), type=Stamp) == value


@dataclasses.dataclass
class _Titled:
    title: str
    year: int = 0


class _Upper:
    """A data descriptor: `__init__`'s assignment would go through it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_" + name

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self if obj is None else obj.__dict__.get(self.name)

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__[self.name] = value.upper()


@dataclasses.dataclass
class _Described:
    name: str = _Upper()  # type: ignore[assignment]


@dataclasses.dataclass
class _Plain:
    name: str
    n: int = 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_fields_land_in_the_instance_dict_as_in_the_twin(fmt: str) -> None:
    """Fields are stored in the instance's `__dict__` on both implementations,
    past a data descriptor of the same name, and still after the class (or a
    base) has changed since its plan was built."""
    module = getattr(codec, fmt)
    data = module.dumps({"name": "ab", "n": 2})
    for tp in (_Described, _Plain):
        rust = module.Decoder(tp).decode(data)
        twin = typed.run_plan(
            plan_for(tp),
            codec.get(f"application/{fmt}", impl="python").loads(data),
            strings=fmt == "json",
            impl="python",
        )
        assert (
            vars(rust)
            == vars(twin)
            == ({"name": "ab"} if tp is _Described else {"name": "ab", "n": 2})
        )
    decoder = module.Decoder(_Plain)
    _Plain.name = _Upper()  # type: ignore[assignment]
    _Plain.name.__set_name__(_Plain, "name")
    try:
        assert vars(decoder.decode(data)) == {"name": "ab", "n": 2}
    finally:
        del _Plain.name
    assert vars(decoder.decode(data)) == {"name": "ab", "n": 2}


@dataclasses.dataclass
class _Leaves:
    """Every field kind the JSON field loop reads in place (`plan::Leaf`), and
    unions next to them that it must leave to their table."""

    s: str | None = "d"
    i: int | None = 0
    f: float | None = 0.0
    b: bool | None = False
    n: None = None
    both: int | float | None = 0
    mixed: str | int | None = 0
    plain_f: float = 0.0
    lit: Color | None = None


_LEAF_TOKENS = [
    b"null",
    b'"x"',
    b'"\\u00e9\\n"',
    b"7",
    b"-3",
    b"1.5",
    b"-0.0",
    b"1e3",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b"nul",
    b"tru",
    b'"red"',
    b"18446744073709551616",
]


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(_Leaves)])
def test_json_field_leaves_read_in_place_match_the_canonical_path(field: str) -> None:
    """Each token in each leaf or optional-leaf field: the one-pass JSON reader
    (which reads these fields without their node) gives what orjson + the
    twin give, value and error alike."""
    from microstd.codec import json as codec_json

    plan = plan_for(_Leaves)

    def twin(b: bytes) -> object:
        return typed.run_plan(plan, codec_json._untyped_loads(b), strings=True, impl="python")

    for token in _LEAF_TOKENS:
        for text in (
            b'{"%s": %s}' % (field.encode(), token),
            b'{"s": "a", "%s":%s }' % (field.encode(), token),
        ):
            got = decode_outcome(codec.json.Decoder(_Leaves).decode, text)
            assert got == decode_outcome(twin, text), text
