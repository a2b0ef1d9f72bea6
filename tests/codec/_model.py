"""Hypothesis strategies for the codec type model, and what each value decodes to."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from microstd.codec import Ext


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    y: float
    x: int
    label: str = "p"


INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text()
KEYS = st.one_of(TEXT, st.integers(min_value=-(2**63), max_value=2**64 - 1))
OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
AWARE = st.datetimes(
    min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=OFFSETS
)

PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), INT64, FLOATS, TEXT, st.binary()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(KEYS, inner, max_size=6),
    ),
    max_leaves=25,
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    FLOATS,
    TEXT,
    st.binary(),
    st.binary().map(bytearray),
    AWARE,
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from(list(Color)),
    st.builds(Ext, st.integers(min_value=0, max_value=127), st.binary(max_size=20)),
)

MODEL = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(KEYS, inner, max_size=5),
        st.frozensets(st.integers(min_value=-1000, max_value=1000), max_size=5),
        st.builds(Point, y=FLOATS, x=INT64, label=TEXT),
    ),
    max_leaves=20,
)


def expected(value: object) -> Any:
    """What `value` decodes to after a msgpack (or CBOR) round trip."""
    if isinstance(value, enum.Enum):
        return expected(value.value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [expected(v) for v in value]
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: expected(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value
