"""JSON: orjson with the type model, and the stdlib twin writing the same bytes."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import orjson
import pytest
from _model import Color, Point
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd.codec import Ext, Tag
from microstd.codec import json as cjson
from microstd.errors import DecodeError, EncodeError

UTC = dt.timezone.utc
IMPLS = {"orjson": (cjson.dumps, cjson.loads), "stdlib": (cjson.pure_dumps, cjson.pure_loads)}

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(),
        st.text(),
        st.binary(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.uuids(),
        st.dates(),
        st.datetimes(timezones=st.just(UTC)),
        st.sampled_from(list(Color)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(), inner, max_size=5),
        st.dictionaries(st.integers(min_value=-(2**63), max_value=2**63), inner, max_size=3),
        st.frozensets(st.integers(min_value=-1000, max_value=1000), max_size=4),
        st.builds(Point, y=st.floats(), x=st.integers(min_value=0, max_value=10), label=st.text()),
    ),
    max_leaves=20,
)


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> tuple:  # type: ignore[type-arg]
    return IMPLS[request.param]


@settings(max_examples=300)
@given(JSON_VALUES)
def test_stdlib_twin_writes_the_same_bytes(value: object) -> None:
    assert cjson.dumps(value) == cjson.pure_dumps(value)


@settings(max_examples=200)
@given(st.dictionaries(st.text(), JSON_VALUES, max_size=5))
def test_same_bytes_with_sort_keys(value: dict[str, object]) -> None:
    assert cjson.dumps(value, sort_keys=True) == cjson.pure_dumps(value, sort_keys=True)


@settings(max_examples=200)
@given(JSON_VALUES)
def test_both_decoders_agree(value: object) -> None:
    data = cjson.dumps(value)
    assert cjson.loads(data) == orjson.loads(data)
    assert cjson.pure_dumps(cjson.pure_loads(data)) == cjson.dumps(cjson.loads(data))


def test_type_model_in_json(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, loads = impl
    u = uuid.UUID(int=7)
    value = {
        "when": dt.datetime(2024, 5, 1, 12, 0, 0, 250, tzinfo=UTC),
        "day": dt.date(2024, 5, 1),
        "id": u,
        "price": Decimal("9.99"),
        "tags": {"a"},
        "raw": b"\x00\xff",
        "color": Color.BLUE,
        "point": Point(y=0.5, x=1),
        "pair": (1, 2),
        "nan": float("nan"),
        "small": 1e-7,
        "n": {1: "one"},
    }
    data = dumps(value)
    assert loads(data) == {
        "when": "2024-05-01T12:00:00.000250+00:00",
        "day": "2024-05-01",
        "id": str(u),
        "price": "9.99",
        "tags": ["a"],
        "raw": base64.b64encode(b"\x00\xff").decode(),
        "color": 2,
        "point": {"y": 0.5, "x": 1, "label": "p"},
        "pair": [1, 2],
        "nan": None,
        "small": 1e-7,
        "n": {"1": "one"},
    }
    assert b'"small":1e-7' in data


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"at": [dt.datetime(2020, 1, 1)]}, "$.at[0]", "attach a tzinfo"),
        ([1, 2**64], "$[1]", "int out of range"),
        ({"x": Ext(1, b"")}, "$.x", "Ext"),
        ({"x": [Tag(1, 2)]}, "$.x[0]", "Tag"),
        ({"items": [{}, {"p": object()}]}, "$.items[1].p", "object"),
    ],
)
def test_encode_errors_name_the_path(impl: tuple, value: object, path: str, message: str) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    with pytest.raises(EncodeError, match=message) as info:
        dumps(value)
    assert info.value.path == path


def test_default_hook(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl
    assert dumps([Ext(1, b"a")], default=lambda o: "ext") == b'["ext"]'

    def boom(o: object) -> object:
        raise LookupError("mine")

    with pytest.raises(LookupError, match="mine"):
        dumps(object(), default=boom)


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"", 0),
        (b"[1, }", 4),
        ('["é", }'.encode(), 7),
        (b"[1", 2),
        (b"\xff", 0),
        (b"NaN", 0),
    ],
)
def test_decode_errors_give_byte_offsets(impl: tuple, data: bytes, offset: int) -> None:  # type: ignore[type-arg]
    _, loads = impl
    with pytest.raises(DecodeError) as info:
        loads(data)
    assert info.value.offset == offset


def test_loads_accepts_bytes_likes_and_str(impl: tuple) -> None:  # type: ignore[type-arg]
    _, loads = impl
    for data in (b'{"a":1}', bytearray(b'{"a":1}'), memoryview(b'{"a":1}'), '{"a":1}'):
        assert loads(data) == {"a": 1}
    assert loads(b"123456789012345678901234567890") == 1.2345678901234568e29


def test_dataclass_defined_order(impl: tuple) -> None:  # type: ignore[type-arg]
    dumps, _ = impl

    @dataclasses.dataclass
    class Rec:
        z: int
        a: int

    assert dumps(Rec(1, 2)) == b'{"z":1,"a":2}'
    assert dumps(Rec(1, 2), sort_keys=True) == b'{"a":2,"z":1}'


def test_named_tuples_encode_as_arrays_in_both_json_codecs() -> None:
    # The type model says tuple subclasses encode as arrays; orjson refused them.
    from typing import NamedTuple

    from microstd.codec import json

    class Point(NamedTuple):
        x: int
        label: str

    value = {"points": [Point(1, "a"), Point(2, "b")], "one": Point(3, "c")}
    expected = b'{"points":[[1,"a"],[2,"b"]],"one":[3,"c"]}'
    assert json.dumps(value) == expected
    assert json.pure_dumps(value) == expected
    assert json.dumps(value, sort_keys=True) == json.pure_dumps(value, sort_keys=True)
