"""The pure twin of typed decoding: executes a plan (`_plan.py`) on decoded
values. `rust/src/codec/typed/` does the same in the Rust core; both must
accept, build and refuse exactly the same things, with the same errors.

Rules (strict: nothing is coerced):
- int is an int (never a bool or "7"); float takes a float or an int;
- datetime takes a datetime (msgpack and CBOR timestamps decode to one), and
  in JSON (and `convert`) an RFC 3339 string with an offset; bytes takes bytes,
  and in JSON (and `convert`) base64 text; date, UUID and Decimal take their
  object or their string form (what msgpack and JSON carry);
- arrays (list, tuple, set, frozenset, NamedTuple) take a list or tuple (a
  set or frozenset too for sets); maps (dict, dataclass, TypedDict) a dict;
- dataclasses are built without calling `__init__` (as msgspec does), then
  `__post_init__` runs if the class has one; unknown fields are ignored
  unless `forbid_unknown_fields` is set.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
import decimal
import re
import uuid
from typing import Any

from microstd.codec import _plan as P
from microstd.codec._timestamp import Timestamp
from microstd.errors import ValidationError

MAX_DEPTH = 256
_TOO_DEEP = f"nesting deeper than {MAX_DEPTH} levels"
_SCALAR_KINDS = frozenset({P.BYTES, P.DATETIME, P.DATE, P.UUID, P.DECIMAL, P.TIMESTAMP})

__all__ = ["check_bounds", "convert", "describe", "scalar", "value_kind"]

_KINDS: dict[type, int] = {
    type(None): P.V_NONE,
    bool: P.V_BOOL,
    int: P.V_INT,
    float: P.V_FLOAT,
    str: P.V_STR,
    bytes: P.V_BYTES,
    bytearray: P.V_BYTES,
    list: P.V_ARRAY,
    tuple: P.V_ARRAY,
    set: P.V_ARRAY,
    frozenset: P.V_ARRAY,
    dict: P.V_MAP,
    _dt.datetime: P.V_DATETIME,
    _dt.date: P.V_DATE,
    uuid.UUID: P.V_UUID,
    decimal.Decimal: P.V_DECIMAL,
    Timestamp: P.V_TIMESTAMP,
}
_NAMES = {
    P.ANY: "any",
    P.NONE: "None",
    P.BOOL: "bool",
    P.INT: "int",
    P.FLOAT: "float",
    P.STR: "str",
    P.BYTES: "bytes",
    P.DATETIME: "datetime",
    P.DATE: "date",
    P.UUID: "UUID",
    P.DECIMAL: "Decimal",
    P.TIMESTAMP: "Timestamp",
    P.LIST: "array",
    P.SET: "array",
    P.FROZENSET: "array",
    P.VARTUPLE: "array",
    P.TUPLE: "array",
    P.DICT: "map",
}


def value_kind(value: object) -> int | None:
    """The union dispatch kind of a decoded value (None: no kind)."""
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for t, k in _KINDS.items():
        if isinstance(value, t):
            return P.V_BOOL if isinstance(value, bool) else k
    return None


def describe(value: object) -> str:
    """What was found, for an error: the type's name, with short values shown."""
    t = type(value)
    name = "None" if value is None else t.__name__
    if t in (int, float, bool):
        return f"{name} {value!r}"
    if isinstance(value, str) and len(value) <= 20:
        return f"str {value!r}"
    return name


class _Invalid(Exception):
    """Carries a failure out of the walk; the path is built as it unwinds."""

    def __init__(self, message: str, expected: str, found: str) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.found = found
        self.segments: list[str] = []


def _wrong(expected: str, value: object) -> _Invalid:
    found = describe(value)
    return _Invalid(f"expected {expected}, got {found}", expected, found)


def _key_segment(key: object) -> str:
    return f".{key}" if isinstance(key, str) else f"[{key!r}]"


class _Run:
    __slots__ = ("depth", "forbid", "nodes", "strings")

    def __init__(self, nodes: list[tuple[Any, ...]], strings: bool, forbid: bool) -> None:
        self.nodes = nodes
        self.strings = strings
        self.forbid = forbid
        self.depth = 0

    def item(self, index: int, value: Any, position: int | str) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Invalid(_TOO_DEEP, f"at most {MAX_DEPTH} levels", "deeper data")
            return self.conv(index, value)
        except _Invalid as bad:
            bad.segments.append(f"[{position}]" if isinstance(position, int) else position)
            raise
        finally:
            self.depth -= 1

    def conv(self, index: int, value: Any) -> Any:
        node = self.nodes[index]
        kind = node[0]
        t = type(value)
        if kind == P.ANY:
            return value
        if kind == P.STR:
            if t is str or isinstance(value, str):
                return value
            raise _wrong("str", value)
        if kind == P.INT:
            if t is int or (isinstance(value, int) and not isinstance(value, bool)):
                return value
            raise _wrong("int", value)
        if kind == P.FLOAT:
            if t is float:
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise _wrong("float", value)
        if kind == P.BOOL:
            if t is bool:
                return value
            raise _wrong("bool", value)
        if kind == P.NONE:
            if value is None:
                return None
            raise _wrong("None", value)
        if kind == P.DATACLASS:
            return self.dataclass(node, value)
        if kind == P.LIST:
            if t is list or t is tuple:
                item = node[1]
                return [self.item(item, v, i) for i, v in enumerate(value)]
            raise _wrong("array", value)
        if kind == P.DICT:
            if not isinstance(value, dict):
                raise _wrong("map", value)
            key_node, value_node = node[1], node[2]
            out = {}
            for k, v in value.items():
                seg = _key_segment(k)
                out[self.item(key_node, k, seg)] = self.item(value_node, v, seg)
            return out
        if kind == P.UNION:
            vk = value_kind(value)
            for option_kind, option in node[2]:
                if option_kind == vk:
                    return self.conv(option, value)
            raise _wrong(node[1], value)
        if kind == P.LITERAL:
            for lit in node[2]:
                if type(lit) is t and lit == value:
                    return lit
            raise _Invalid(f"expected {node[1]}, got {describe(value)}", node[1], describe(value))
        if kind == P.ENUM:
            return self.enum(node, value)
        if kind in (P.SET, P.FROZENSET):
            if not isinstance(value, (list, tuple, set, frozenset)):
                raise _wrong("array", value)
            items = [self.item(node[1], v, i) for i, v in enumerate(value)]
            try:
                return set(items) if kind == P.SET else frozenset(items)
            except TypeError as exc:
                raise _Invalid(f"unusable set member: {exc}", "hashable", "unhashable") from None
        if kind == P.VARTUPLE:
            if t is list or t is tuple:
                return tuple([self.item(node[1], v, i) for i, v in enumerate(value)])
            raise _wrong("array", value)
        if kind == P.TUPLE:
            if t is not list and t is not tuple:
                raise _wrong("array", value)
            items = node[1]
            if len(value) != len(items):
                expected = f"array of {len(items)}"
                found = f"array of {len(value)}"
                raise _Invalid(f"expected {expected}, got {found}", expected, found)
            pairs = enumerate(zip(items, value, strict=True))
            return tuple([self.item(n, v, i) for i, (n, v) in pairs])
        if kind == P.TYPEDDICT:
            return self.typeddict(node, value)
        if kind == P.NAMEDTUPLE:
            return self.namedtuple(node, value)
        if kind in _SCALAR_KINDS:
            return scalar(kind, value, self.strings)
        if kind == P.CONSTRAINED:
            return check_bounds(node, self.conv(node[1], value))
        raise AssertionError(f"unknown plan node {node!r}")  # pragma: no cover

    def enum(self, node: tuple[Any, ...], value: Any) -> Any:
        cls, members = node[2], node[3]
        if isinstance(value, cls):
            return value
        try:
            member = members.get(value)
        except TypeError:
            member = None
        if member is not None and type(member.value) is type(value):
            return member
        found = describe(value)
        raise _Invalid(f"expected {node[1]} value, got {found}", node[1], found)

    def dataclass(self, node: tuple[Any, ...], value: Any) -> Any:
        if type(value) is not dict and not isinstance(value, dict):
            raise _wrong(node[1], value)
        cls, fields, post_init, slots = node[2], node[3], node[4], node[5]
        obj = cls.__new__(cls)
        used = 0
        setter = object.__setattr__
        attrs = None if slots else obj.__dict__
        for name, index, default_kind, default in fields:
            if name in value:
                used += 1
                v = self.item(index, value[name], "." + name)
            elif default_kind == P.DEFAULT:
                v = default
            elif default_kind == P.FACTORY:
                v = default()
            else:
                bad = _Invalid(f"missing required field {name!r}", node[1], "map")
                raise bad
            if attrs is not None:
                attrs[name] = v
            else:
                setter(obj, name, v)
        if self.forbid and used != len(value):
            self.unknown(value, {f[0] for f in fields}, node[1])
        if post_init:
            obj.__post_init__()
        return obj

    def unknown(self, value: Any, known: set[str], name: str) -> None:
        for key in value:
            if key not in known:
                bad = _Invalid(f"unknown field {key!r}", name, "map")
                raise bad

    def typeddict(self, node: tuple[Any, ...], value: Any) -> Any:
        if not isinstance(value, dict):
            raise _wrong(node[1], value)
        out = {}
        used = 0
        for name, index, required in node[2]:
            if name in value:
                used += 1
                out[name] = self.item(index, value[name], "." + name)
            elif required:
                raise _Invalid(f"missing required field {name!r}", node[1], "map")
        if self.forbid and used != len(value):
            self.unknown(value, {f[0] for f in node[2]}, node[1])
        return out

    def namedtuple(self, node: tuple[Any, ...], value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _wrong(node[1], value)
        cls, nodes, defaults = node[2], node[3], node[4]
        n = len(value)
        if not len(nodes) - len(defaults) <= n <= len(nodes):
            low = len(nodes) - len(defaults)
            expected = f"array of {low}" + (f" to {len(nodes)}" if defaults else "")
            raise _Invalid(f"expected {expected}, got array of {n}", expected, f"array of {n}")
        items = [self.item(nodes[i], v, i) for i, v in enumerate(value)]
        if n < len(nodes):
            items += defaults[len(defaults) - (len(nodes) - n) :]
        return tuple.__new__(cls, items)


def scalar(kind: int, value: Any, strings: bool) -> Any:
    """bytes, datetime, date, UUID or Decimal from `value` (the Rust core calls
    this too for anything but the exact type, so both parse strings alike)."""
    if kind == P.BYTES:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if strings and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid(
                    "expected bytes (base64 text), got str that is not base64",
                    "bytes",
                    "str",
                ) from None
        raise _wrong("bytes", value)
    if kind == P.DATETIME:
        return _datetime(value, strings)
    if kind == P.DATE:
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                if len(value) == 10:
                    return _dt.date.fromisoformat(value)
            raise _Invalid(f"expected date (YYYY-MM-DD), got str {value!r}", "date", "str")
        raise _wrong("date", value)
    if kind == P.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                raise _Invalid(f"expected UUID, got str {value!r}", "UUID", "str") from None
        raise _wrong("UUID", value)
    if kind == P.DECIMAL:
        if isinstance(value, decimal.Decimal):
            return value
        if isinstance(value, str):
            try:
                return decimal.Decimal(value)
            except decimal.InvalidOperation:
                raise _Invalid(f"expected Decimal, got str {value!r}", "Decimal", "str") from None
        raise _wrong("Decimal", value)
    if kind == P.TIMESTAMP:
        if isinstance(value, Timestamp):
            return value
        if isinstance(value, _dt.datetime):
            return Timestamp.from_datetime(_datetime(value, strings))
        if strings and isinstance(value, str):
            return _timestamp_text(value)
        raise _wrong("Timestamp", value)
    raise AssertionError(f"not a scalar kind: {kind}")  # pragma: no cover


_RFC3339_NANOS = re.compile(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", re.ASCII)


def _timestamp_text(value: str) -> Timestamp:
    """An RFC 3339 text with up to 9 fraction digits (what JSON writes for a Timestamp)."""
    m = _RFC3339_NANOS.fullmatch(value)
    if m is not None:
        whole = _datetime(m[1] + m[3], True)
        nanos = int((m[2] or "0").ljust(9, "0"))
        stamp = Timestamp.from_datetime(whole)
        return Timestamp(stamp.seconds, nanos)
    raise _Invalid(
        f"expected Timestamp (RFC 3339 with an offset), got str {value!r}", "Timestamp", "str"
    )


def _datetime(value: Any, strings: bool) -> Any:
    if isinstance(value, _dt.datetime):
        return value
    if strings and isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.utcoffset() is not None:
            return parsed
        raise _Invalid(
            f"expected datetime (RFC 3339 with an offset), got str {value!r}",
            "datetime",
            "str",
        )
    raise _wrong("datetime", value)


def check_bounds(node: tuple[Any, ...], out: Any) -> Any:
    """`out` if it meets an `Annotated` node's bounds (also called by the Rust core)."""
    _, _, ge, le, min_length, max_length, pattern = node
    if ge is not None and not out >= ge:
        raise _Invalid(f"expected a value >= {ge}, got {out!r}", f">= {ge}", repr(out))
    if le is not None and not out <= le:
        raise _Invalid(f"expected a value <= {le}, got {out!r}", f"<= {le}", repr(out))
    if min_length is not None and len(out) < min_length:
        expected = f"length >= {min_length}"
        raise _Invalid(f"expected {expected}, got length {len(out)}", expected, str(len(out)))
    if max_length is not None and len(out) > max_length:
        expected = f"length <= {max_length}"
        raise _Invalid(f"expected {expected}, got length {len(out)}", expected, str(len(out)))
    if pattern is not None and pattern.search(out) is None:
        expected = f"str matching {pattern.pattern!r}"
        raise _Invalid(f"expected {expected}, got {out!r}", expected, "str")
    return out


def convert(
    plan: P.Plan, value: object, *, strings: bool = True, forbid_unknown_fields: bool = False
) -> Any:
    """`value` (already decoded) as the plan's type; ValidationError on a mismatch."""
    run = _Run(plan.nodes, strings, forbid_unknown_fields)
    try:
        return run.conv(0, value)
    except _Invalid as bad:
        path = "$" + "".join(reversed(bad.segments))
        raise ValidationError(bad.message, path, bad.expected, bad.found) from None
    except RecursionError:
        raise ValidationError(
            "nesting deeper than the interpreter's recursion limit", "$", plan.name, "deeper data"
        ) from None
