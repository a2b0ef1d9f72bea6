"""Property tests: on generated values of the whole type model the Rust codec
and the cbor2 baseline write the same bytes (canonical and not), and the
values round-trip."""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd.codec import Tag, _pure_cbor, cbor
from microstd.codec._cbor_simple import Simple
from microstd.errors import EncodeError


class Suit(enum.Enum):
    HEARTS = "h"
    SPADES = 4


@dataclasses.dataclass
class Point:
    x: int
    label: str


def _aware_datetimes() -> st.SearchStrategy[datetime]:
    offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda m: timezone(timedelta(minutes=m))
    )
    return st.datetimes(
        min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
    )


_decimals = st.decimals(allow_nan=True, allow_infinity=True, places=None).filter(
    lambda d: not d.is_snan()
)

hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.dates(),
    st.uuids(),
    st.sampled_from([Suit.HEARTS, Suit.SPADES]),
)

leaves = st.one_of(
    hashable,
    st.floats(),
    _aware_datetimes(),
    _decimals,
    st.builds(Simple, st.one_of(st.integers(0, 19), st.integers(32, 255))),
    st.builds(bytearray, st.binary(max_size=10)),
    st.builds(Point, st.integers(), st.text(max_size=5)),
)


def _extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(hashable, children, max_size=5),
        st.frozensets(hashable, max_size=5),
        st.sets(st.tuples(hashable, hashable), max_size=3),
        st.builds(Tag, st.integers(6, 2**64 - 1).filter(lambda n: n not in _OWN_TAGS), children),
    )


_OWN_TAGS = {37, 100, 258, 1004}
values = st.recursive(leaves, _extend, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(value=values, canonical=st.booleans())
def test_rust_and_baseline_write_the_same_bytes(value: object, canonical: bool) -> None:
    if canonical and _has_alike_keys(value):
        # Canonical CBOR refuses keys that encode alike (4 and an Enum of value 4).
        for dumps in (cbor.dumps, _pure_cbor.dumps):
            with pytest.raises(EncodeError, match="same bytes"):
                dumps(value, canonical=True)
        return
    rust = cbor.dumps(value, canonical=canonical)
    assert rust == _pure_cbor.dumps(value, canonical=canonical)
    assert _same(cbor.loads(rust), _pure_cbor.loads(rust))


def _has_alike_keys(value: object) -> bool:
    """True when some map or set inside `value` has two keys that encode alike."""
    keys: list[object] = []
    if isinstance(value, dict):
        keys = list(value)
        children = [*value, *value.values()]
    elif isinstance(value, (set, frozenset)):
        keys = children = list(value)
    elif isinstance(value, (list, tuple)):
        children = list(value)
    elif isinstance(value, Tag):
        children = [value.value]
    else:
        return False
    if any(_has_alike_keys(child) for child in children):
        return True
    encoded = [cbor.dumps(k) for k in keys]
    return len(set(encoded)) < len(encoded)


def _normal(value: object) -> object:
    """What a value decodes to: the type model's documented mapping."""
    if isinstance(value, enum.Enum):
        return _normal(value.value)
    if isinstance(value, Point):
        return {"x": value.x, "label": value.label}
    if isinstance(value, tuple):
        return [_normal(v) for v in value]
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {_key(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {_key(v) for v in value}
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, Decimal) and not value.is_finite():
        return float(value)
    if isinstance(value, Decimal) and value.is_zero():
        return value.copy_abs()
    if isinstance(value, Tag):
        return Tag(value.tag, _normal(value.value))
    return value


def _key(value: object) -> object:
    if isinstance(value, enum.Enum):
        return _key(value.value)
    if isinstance(value, tuple):
        return tuple(_key(v) for v in value)
    return value


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, datetime) and isinstance(b, datetime):
        # Epoch floats carry microseconds to within one.
        return abs(a - b) <= timedelta(microseconds=1)
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, Tag) and isinstance(b, Tag):
        return a.tag == b.tag and _same(a.value, b.value)
    return a == b


@settings(max_examples=300, deadline=None)
@given(value=values, canonical=st.booleans())
def test_round_trip(value: object, canonical: bool) -> None:
    if canonical and _has_alike_keys(value):
        return  # refused, see test_rust_and_baseline_write_the_same_bytes
    decoded = cbor.loads(cbor.dumps(value, canonical=canonical))
    assert _same(decoded, _normal(value))


@settings(max_examples=200, deadline=None)
@given(value=st.dictionaries(hashable, hashable, max_size=8))
def test_canonical_is_independent_of_insertion_order(value: dict[object, object]) -> None:
    reordered = dict(reversed(list(value.items())))
    if _has_alike_keys(value):
        # Two keys that encode alike (4 and an Enum of value 4): refused either way.
        for mapping in (value, reordered):
            with pytest.raises(EncodeError, match="same bytes"):
                cbor.dumps(mapping, canonical=True)
        return
    assert cbor.dumps(value, canonical=True) == cbor.dumps(reordered, canonical=True)


def test_generated_uuid_and_date_fixtures_exist() -> None:
    # The strategies above include these types; this pins their encodings.
    assert cbor.dumps(uuid.UUID(int=0))[:2] == b"\xd8\x25"
    assert cbor.dumps(date(1970, 1, 1)) == bytes.fromhex("d86400")
