"""Dataclass fields stored by the core leave each instance exactly as
`object.__setattr__` (and the pure twin) would: the same values, the same
`vars()` order, the same references, whatever state the class's shared keys
are in. On CPython 3.11 the core writes straight into the instance's inline
values (`rust/src/codec/typed/inline_values.rs`); these tests pin what that
must not change, on every interpreter."""

from __future__ import annotations

import copy
import dataclasses
import gc
import sys
import weakref
from typing import Any

import pytest

from microstd import _accel, codec
from microstd.codec import typed
from microstd.codec._plan import plan_for

pytestmark = pytest.mark.skipif(_accel.core is None, reason="needs the Rust core")

FORMATS = ["msgpack", "cbor", "json"]


def twin(tp: Any, fmt: str, data: bytes) -> Any:
    loads = codec.get(f"application/{fmt}", impl="python").loads
    return typed.run_plan(plan_for(tp), loads(data), strings=fmt == "json", impl="python")


def decoders(tp: Any, fmt: str) -> list[Any]:
    """The core's one-pass decoder and its convert path (decode, then type)."""
    module = getattr(codec, fmt)
    loads = codec.get(f"application/{fmt}").loads
    plan = plan_for(tp)

    def converted(data: bytes) -> Any:
        return typed.run_plan(plan, loads(data), strings=fmt == "json", impl="rust")

    return [module.Decoder(tp).decode, converted]


def by_setattr(tp: Any, items: list[tuple[str, Any]]) -> Any:
    """The generic path's result: an instance filled by `object.__setattr__`."""
    obj = object.__new__(tp)
    for name, value in items:
        object.__setattr__(obj, name, value)
    return obj


def same_as_twin(tp: Any, fmt: str, wire: dict[str, Any]) -> list[Any]:
    """Decodes `wire` every way and returns the core's results, asserting
    each one's `vars()` equals the twin's, in the order the generic path
    leaves: the convert path stores in field order (as the twin does), the
    one-pass readers in wire order, then the missing fields' defaults, then
    whatever `__post_init__` adds."""
    data = getattr(codec, fmt).dumps(wire)
    expected = vars(twin(tp, fmt, data))
    names = [f.name for f in dataclasses.fields(tp)]
    one_pass_order = (
        [k for k in wire if k in names]
        + [n for n in names if n not in wire]
        + [k for k in expected if k not in names]
    )
    out = []
    for decode, order in zip(decoders(tp, fmt), [one_pass_order, list(expected)], strict=True):
        obj = decode(data)
        assert type(obj) is tp
        assert vars(obj) == expected
        assert list(vars(obj)) == order
        generic = by_setattr(tp, list(vars(obj).items()))
        assert list(vars(obj).items()) == list(vars(generic).items())
        out.append(obj)
    return out


def fresh_class() -> Any:
    """A new class each call: new shared keys, nothing stored yet."""

    @dataclasses.dataclass
    class Item:
        a: int
        b: str = "b"
        c: list[int] = dataclasses.field(default_factory=list)

    return Item


@pytest.mark.parametrize("fmt", FORMATS)
def test_defaults_factories_kw_only_inheritance_post_init(fmt: str) -> None:
    @dataclasses.dataclass
    class Base:
        x: int
        y: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(kw_only=True)
    class Child(Base):
        z: str = "z"
        w: dict[str, int] = dataclasses.field(default_factory=dict)

        def __post_init__(self) -> None:
            self.extra = self.x + 1

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        p: int
        q: str = "q"

    for _ in range(3):  # the first store of each name grows the shared keys
        same_as_twin(Base, fmt, {"x": 1})
        same_as_twin(Base, fmt, {"x": 1, "y": [2]})
        (obj, _) = same_as_twin(Child, fmt, {"x": 1, "z": "s"})
        assert list(vars(obj)) == ["x", "z", "y", "w", "extra"]
        same_as_twin(Child, fmt, {"x": 1, "y": [1], "z": "s", "w": {"k": 1}})
        same_as_twin(Frozen, fmt, {"p": 3})
    built = Child(x=1, y=[1], z="s", w={"k": 1})
    (decoded, _) = same_as_twin(Child, fmt, {"x": 1, "y": [1], "z": "s", "w": {"k": 1}})
    assert list(vars(decoded).items()) == list(vars(built).items())


@pytest.mark.parametrize("fmt", FORMATS)
def test_wire_order_is_the_insertion_order(fmt: str) -> None:
    tp = fresh_class()
    tp(a=0)  # the field names in the shared keys, in field order
    data = getattr(codec, fmt).dumps({"b": "x", "a": 1})
    (decode, converted) = decoders(tp, fmt)
    one_pass = decode(data)
    assert list(vars(one_pass).items()) == list(
        vars(by_setattr(tp, [("b", "x"), ("a", 1), ("c", [])])).items()
    )
    assert vars(converted(data)) == vars(twin(tp, fmt, data)) == vars(one_pass)


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_keys_grown_by_an_extra_attribute(fmt: str) -> None:
    tp = fresh_class()
    first = tp(a=1)
    first.extra = "e"  # an attribute ahead of no field: grows the shared keys
    first.zz = 1
    for _ in range(2):
        (obj, _) = same_as_twin(tp, fmt, {"a": 2, "b": "x", "c": [1]})
        obj.extra = "later"
        assert list(vars(obj)) == ["a", "b", "c", "extra"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_keys_filled_before_the_fields(fmt: str) -> None:
    """No room left in the class's shared keys for the field names: every
    store goes the generic way (which makes the instance's dict)."""
    tp = fresh_class()
    filler = object.__new__(tp)
    for i in range(40):
        setattr(filler, f"junk{i}", i)
    for _ in range(2):
        same_as_twin(tp, fmt, {"a": 2, "b": "x", "c": [1]})
        same_as_twin(tp, fmt, {"a": 2})


@pytest.mark.parametrize("fmt", FORMATS)
def test_more_fields_than_the_shared_keys_hold(fmt: str) -> None:
    fields = [(f"f{i}", int, dataclasses.field(default=i)) for i in range(40)]
    tp = dataclasses.make_dataclass("Wide", fields)
    for _ in range(3):
        same_as_twin(tp, fmt, {f"f{i}": -i for i in range(40)})
        same_as_twin(tp, fmt, {f"f{i}": -i for i in range(0, 40, 3)})
    assert list(vars(tp())) == [f"f{i}" for i in range(40)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_attributes_set_in_other_orders_or_deleted_before(fmt: str) -> None:
    tp = fresh_class()
    other = by_setattr(tp, [("c", []), ("b", "x"), ("a", 1)])
    del other.b
    other.__dict__  # noqa: B018  (makes this one instance's dict)
    other.more = 1
    gone = tp(a=1)
    del gone.a
    for _ in range(2):
        same_as_twin(tp, fmt, {"a": 2, "b": "y", "c": [3]})
    assert list(vars(other)) == ["c", "a", "more"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_class_changed_after_the_decoder_was_built(fmt: str) -> None:
    tp = fresh_class()
    data = getattr(codec, fmt).dumps({"a": 1, "b": "x"})
    (decode, converted) = decoders(tp, fmt)
    assert vars(decode(data)) == {"a": 1, "b": "x", "c": []}
    tp.unrelated = 5  # a new version of the class, no descriptor
    tp.b = "class default"  # a plain class attribute shadowed by the field
    for run in (decode, converted):
        obj = run(data)
        assert list(vars(obj).items()) == [("a", 1), ("b", "x"), ("c", [])]

    class Loud:
        """A data descriptor on a field's name: the store must go through it."""

        def __get__(self, obj: object, owner: type | None = None) -> Any:
            return self if obj is None else obj.__dict__["_a"]

        def __set__(self, obj: object, value: Any) -> None:
            obj.__dict__["_a"] = value * 10

    tp.a = Loud()
    try:
        for run in (decode, converted):
            assert vars(run(data)) == vars(twin(tp, fmt, data)) == {"a": 1, "b": "x", "c": []}
    finally:
        del tp.a
    for run in (decode, converted):
        assert list(vars(run(data)).items()) == [("a", 1), ("b", "x"), ("c", [])]


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_repeated_keys_on_the_wire_keep_the_last(fmt: str) -> None:
    tp = fresh_class()
    tp(a=0)
    if fmt == "msgpack":
        data = b"\x83\xa1a\x01\xa1b\xa1x\xa1a\x02"
    else:
        data = b"\xa3aa\x01ab" + b"ax" + b"aa\x02"
    (decode, _) = decoders(tp, fmt)
    obj = decode(data)
    assert vars(obj) == vars(twin(tp, fmt, data))
    assert obj.a == 2


def test_repeated_keys_in_json_keep_the_last() -> None:
    tp = fresh_class()
    tp(a=0)
    data = b'{"a": 1, "b": "x", "a": 2}'
    obj = codec.json.Decoder(tp).decode(data)
    assert vars(obj) == vars(twin(tp, "json", data))
    assert obj.a == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_references_are_counted_as_the_generic_path_counts_them(fmt: str) -> None:
    sentinel: list[int] = []

    @dataclasses.dataclass
    class Held:
        a: list[int]
        d: list[int] = dataclasses.field(default_factory=lambda: sentinel)

    data = getattr(codec, fmt).dumps({"a": [1, 2, 3]})
    for decode in decoders(Held, fmt):
        decode(data)  # warm: names in the shared keys
        base = sys.getrefcount(sentinel)
        objs = [decode(data) for _ in range(50)]
        assert sys.getrefcount(sentinel) == base + 50
        reference = by_setattr(Held, [("a", [1])])
        ours, theirs = sys.getrefcount(objs[0].a), sys.getrefcount(reference.a)
        assert ours == theirs
        del objs
        assert sys.getrefcount(sentinel) == base


@pytest.mark.parametrize("fmt", FORMATS)
def test_fields_past_the_shared_keys_count_references_as_the_generic_path(fmt: str) -> None:
    # Past the 30 names shared keys hold, values go into the instance's
    # made `__dict__` (stored there directly, as `object.__setattr__` does).
    sentinel: list[int] = []
    fields: list[Any] = [(f"f{i}", Any, dataclasses.field(default=None)) for i in range(39)]
    fields.append(("last", list[int], dataclasses.field(default_factory=lambda: sentinel)))
    tp = dataclasses.make_dataclass("WideHeld", fields)
    data = getattr(codec, fmt).dumps({f"f{i}": [i] for i in range(39)})
    for decode in decoders(tp, fmt):
        decode(data)  # warm: names in the shared keys
        base = sys.getrefcount(sentinel)
        objs = [decode(data) for _ in range(20)]
        assert sys.getrefcount(sentinel) == base + 20
        reference = twin(tp, fmt, data)
        for obj in objs:
            assert list(vars(obj)) == [f"f{i}" for i in range(39)] + ["last"]
            assert [getattr(obj, f"f{i}") for i in range(39)] == [[i] for i in range(39)]
            assert sys.getrefcount(obj.f38) == sys.getrefcount(reference.f38)
        del objs, obj, reference
        assert sys.getrefcount(sentinel) == base


@pytest.mark.parametrize("fmt", FORMATS)
def test_gc_weakrefs_and_later_use_of_the_instance(fmt: str) -> None:
    tp = fresh_class()
    tp(a=0)
    data = getattr(codec, fmt).dumps({"a": 1, "b": "x", "c": [7]})
    for decode in decoders(tp, fmt):
        fresh = decode(data)  # no `vars()` yet: the values are still inline
        referents = gc.get_referents(fresh)
        assert any(r is fresh.c for r in referents)
        assert any(r is fresh.b for r in referents)
    (obj, converted) = same_as_twin(tp, fmt, {"a": 1, "b": "x", "c": [7]})
    assert obj == converted == tp(a=1, b="x", c=[7])
    assert copy.copy(obj) == obj
    assert copy.deepcopy(obj) == obj
    assert dataclasses.replace(obj, a=2) == tp(a=2, b="x", c=[7])
    obj.c.append(obj)  # a cycle through an inline value
    ref = weakref.ref(obj)
    obj.new = "n"
    del obj.b
    assert list(vars(obj)) == ["a", "c", "new"]
    obj.b = "again"
    assert list(obj.__dict__.items()) == [("a", 1), ("c", [7, obj]), ("new", "n"), ("b", "again")]
    del obj
    gc.collect()
    assert ref() is None
    assert vars(getattr(codec, fmt).Decoder(tp).decode(data)) == {"a": 1, "b": "x", "c": [7]}


@dataclasses.dataclass
class _Child:
    n: int

    def __post_init__(self) -> None:
        for obj in gc.get_objects():
            if type(obj) is _Parent:
                obj.__dict__  # noqa: B018  (makes its dict)


@dataclasses.dataclass
class _Parent:
    a: int
    child: _Child
    z: int = 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_instance_dict_made_while_the_instance_is_being_filled(fmt: str) -> None:
    """User code run between two stores (a nested `__post_init__`) may reach
    the half-built instance through `gc` and make its `__dict__`: the later
    stores then go into that dict."""
    _Parent(a=0, child=_Child(n=0))
    for _ in range(2):
        same_as_twin(_Parent, fmt, {"a": 1, "child": {"n": 2}, "z": 3})
        same_as_twin(_Parent, fmt, {"a": 1, "child": {"n": 2}})
