"""JSON through orjson, with the part of the type model JSON can carry.

What JSON carries, and how (`dumps` and the stdlib twin `pure_dumps` write
the same bytes):

- None, bool, str, list / tuple, dict: natively. Dict keys may be str, int,
  float, bool or None; JSON writes them as text (`{1: 2}` -> `{"1":2}`), and
  `sort_keys=True` sorts by that text (so `"-1"` before `"-2"`).
- int: within [-2**63, 2**64), else `EncodeError` (as in msgpack).
- float: shortest round-trip form; NaN and infinities become `null` (orjson's rule).
- aware datetime: RFC 3339 text, `datetime.isoformat()` (`2024-05-01T12:00:00+00:00`).
  A naive datetime raises `EncodeError` (attach a tzinfo), as in msgpack.
- date: `"YYYY-MM-DD"`; UUID: the 36-character form; Decimal: `str(d)`;
  Enum: its value; dataclass: an object of its fields; set / frozenset: an array.
- bytes / bytearray / memoryview: standard base64 text with padding (it
  decodes as that str: JSON has no bytes type).
- `Ext` and `Tag` cannot be carried: `EncodeError` unless `default=` handles them.

Decoding gives str / int / float / bool / None / list / dict; integers
outside 64 bits decode as float (orjson's rule). Both decoders refuse, with
the same `DecodeError` (message and offset):

- a number too large for a double (`1e400`, a 400-digit integer): orjson
  refuses it, and silently turning it into `inf` would hide the problem;
- a lone surrogate escape (`"\\ud800"` without its pair): orjson refuses it
  (the stricter choice), and such a str cannot be encoded again as UTF-8.

Errors: `EncodeError` with the path of the offending value, `DecodeError`
with the byte offset.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import functools
import json as _stdjson
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from microstd import _accel
from microstd.codec import _json_guard, _json_limits
from microstd.codec._ext import Ext, Tag
from microstd.codec._limits import Limits
from microstd.codec._paths import RELEASED, find_path, is_released
from microstd.codec._timestamp import Timestamp
from microstd.errors import DecodeError, EncodeError

__all__ = [
    "CONTENT_TYPE",
    "Decoder",
    "StreamDecoder",
    "dumps",
    "iter_loads",
    "loads",
    "pure_dumps",
    "pure_loads",
]

CONTENT_TYPE = "application/json"

_NAIVE = "cannot encode a naive datetime: attach a tzinfo (e.g. datetime.timezone.utc)"
_INT_RANGE = "int out of range (must be in [-2**63, 2**64))"
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class _Unencodable(Exception):
    def __init__(self, message: str, obj: object) -> None:
        super().__init__(message)
        self.message = message
        self.obj = obj


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _model(obj: object, user_default: Callable[[object], object] | None) -> object:
    """Map one object orjson (or json) does not carry onto one it does."""
    if isinstance(obj, _dt.datetime):
        if obj.utcoffset() is None:
            if user_default is not None:
                return user_default(obj)
            raise _Unencodable(_NAIVE, obj)
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        if is_released(obj):
            raise _Unencodable(RELEASED, obj)
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, Timestamp):
        return _timestamp_text(obj)
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        # tuple: orjson hands tuple subclasses (NamedTuple) to the hook.
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, _dt.date):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if user_default is not None:
        return user_default(obj)
    if isinstance(obj, (Ext, Tag)):
        raise _Unencodable(f"cannot encode {_type_name(obj)} as JSON", obj)
    raise _Unencodable(f"cannot encode object of type {_type_name(obj)}", obj)


def _timestamp_text(ts: Timestamp) -> str:
    """RFC 3339 with nanoseconds; JSON strings have no years outside 1..9999."""
    try:
        whole = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=ts.seconds)
    except OverflowError:
        raise _Unencodable("cannot encode a Timestamp outside years 1..9999 as JSON", ts) from None
    return f"{whole.isoformat()}.{ts.nanoseconds:09d}+00:00"


_check = _json_guard.check
_SORTED_OPTIONS = _OPTIONS | orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def _plain_hook(value: object) -> object:
    return _model(value, None)


def _is_big_int(o: object) -> bool:
    return isinstance(o, int) and not isinstance(o, bool) and not -(2**63) <= o < 2**64


# What the Rust core's `json_dumps` / `json_loads` call (`rust/src/codec/json.rs`).
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
# orjson's non-str-keys option costs ~130 ns of a small message's encode: the
# first try goes without it, and a dict with other keys takes the full path.
_FAST_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    """Encode `obj` as compact UTF-8 JSON."""
    if default is None and not sort_keys:
        _check(obj)
        try:
            return orjson.dumps(obj, _plain_hook, _FAST_OPTIONS)
        except orjson.JSONEncodeError:
            pass  # the full path decides, and names the error
    return _full_dumps(obj, default, sort_keys)


def _full_dumps(obj: object, default: Callable[[object], object] | None, sort_keys: bool) -> bytes:
    if default is None:
        # orjson overflows the C stack on deeply nested tuples: refuse first.
        _check(obj)
        data = obj
        hook = _plain_hook
    else:
        # The hook runs user code in the middle of the encode: let orjson walk
        # private copies of the containers, so a hook that mutates one cannot
        # free what orjson is iterating (and copy what each call returns).
        data = _json_guard.snapshot(obj)

        def user_default(value: object) -> object:
            return _json_guard.snapshot(default(value))

        def hook(value: object) -> object:
            return _model(value, user_default)

    # orjson does not sort a dataclass's fields: hand dataclasses to the hook then.
    option = _SORTED_OPTIONS if sort_keys else _OPTIONS
    try:
        return orjson.dumps(data, default=hook, option=option)
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, EncodeError):
            raise cause from None
        if isinstance(cause, _Unencodable):
            raise EncodeError(cause.message, find_path(obj, cause.obj)) from None
        if cause is not None and not isinstance(cause, TypeError):
            raise cause from None  # the user's default= raised: pass it through
        message = str(exc)
        if "Integer exceeds" in message:
            raise EncodeError(_INT_RANGE, find_path(obj, pred=_is_big_int)) from None
        raise EncodeError(message, "$") from None


def _byte_offset(data: bytes | bytearray | memoryview | str, pos: int) -> int:
    """orjson and json report a character index; callers want the byte offset."""
    if isinstance(data, str):
        return len(data[:pos].encode("utf-8", "surrogatepass"))
    raw = bytes(data)
    try:
        return len(raw.decode()[:pos].encode())
    except UnicodeDecodeError:
        return pos


def loads(
    data: bytes | bytearray | memoryview | str,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """Decode one JSON document.

    With `type=T` the result is checked and built as a `T`; strings stand for
    datetimes (RFC 3339) and bytes (base64) where `T` asks for them.

    Limits for untrusted input (each refused with a `DecodeError` at the
    offending item's byte offset, with msgpack's messages):
    `max_container_len` items per array or object, `max_str_len` UTF-8 bytes
    per decoded string (keys included), `max_depth` levels of nesting
    (orjson's own bound, 1024, stays).
    """
    limits = _json_limits.limits(max_container_len, max_str_len, max_depth)
    if type is None:
        return _untyped_loads(data) if limits is None else _limited_loads(data, limits)
    from microstd.codec import typed
    from microstd.codec._plan import plan_for

    plan = plan_for(type)
    if limits is not None:
        # As msgpack's typed path with limits: the checked plain decode, then the plan.
        value = _limited_loads(data, limits)
    elif plan.core is not None:
        return plan.core.decode_json(data, forbid_unknown_fields)
    else:
        value = _untyped_loads(data)
    return typed.run_plan(plan, value, strings=True, forbid_unknown_fields=forbid_unknown_fields)


def _limited_loads(data: bytes | bytearray | memoryview | str, limits: Limits) -> object:
    """The plain decode, then `limits` checked on the same text (`_json_limits`)."""
    if isinstance(data, str):
        value = _untyped_loads(data)
        _json_limits.check(data.encode(), limits)
        return value
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return _untyped_loads(data)  # refused there
    # A bytearray or memoryview is copied first: the text checked is the text decoded.
    raw = data if isinstance(data, bytes) else bytes(data)
    value = _untyped_loads(raw)
    _json_limits.check(raw, limits)
    return value


# The Python-level functions, also when the core replaces them (tests compare the two).
_py_dumps, _py_loads = dumps, loads
if _accel.core is not None:
    # With the core, the public functions are its own (`rust/src/codec/json.rs`):
    # the same orjson calls, without a Python frame per call.
    dumps = _accel.core.json_dumps
    loads = _accel.core.json_loads


def Decoder(
    type: Any,
    *,
    forbid_unknown_fields: bool = False,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """A reusable decoder of JSON into `type`: `Decoder(T).decode(data)`.

    The limits for untrusted input are those of `loads`; with any of them
    set, each document is decoded and checked, then built as a `T` (two
    passes, as `loads(type=T, ...)` takes).
    """
    from microstd.codec import typed

    limits = _json_limits.limits(max_container_len, max_str_len, max_depth)
    if limits is None:
        return typed.Decoder(
            type,
            loads=_untyped_loads,
            strings=True,
            forbid_unknown_fields=forbid_unknown_fields,
            direct="decode_json",
        )
    return typed.Decoder(
        type,
        loads=functools.partial(_limited_loads, limits=limits),
        strings=True,
        forbid_unknown_fields=forbid_unknown_fields,
    )


def StreamDecoder(
    type: Any = None,
    *,
    forbid_unknown_fields: bool = False,
    max_buffer_size: int = 64 * 1024 * 1024,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """An incremental decoder of newline-delimited JSON: `feed(bytes)`, then iterate.

    The limits apply to each document, as in `loads`.
    """
    from microstd.codec import stream, typed

    return stream.StreamDecoder(
        stream.ndjson_next(_line_loads(max_container_len, max_str_len, max_depth)),
        convert=typed.converter(type, strings=True, forbid_unknown_fields=forbid_unknown_fields),
        max_buffer_size=max_buffer_size,
    )


def iter_loads(
    buffer: bytes | bytearray | memoryview,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """Every document of a newline-delimited JSON buffer, in order (limits as in `loads`)."""
    from microstd.codec import stream, typed

    line_loads = _line_loads(max_container_len, max_str_len, max_depth)
    convert = typed.converter(type, strings=True, forbid_unknown_fields=forbid_unknown_fields)
    return stream.ndjson_iter(line_loads, buffer, convert)


def _line_loads(
    max_container_len: int | None, max_str_len: int | None, max_depth: int | None
) -> Callable[[bytes], object]:
    """How a stream decodes one line: checked against the limits, if any are set."""
    limits = _json_limits.limits(max_container_len, max_str_len, max_depth)
    if limits is None:
        return _untyped_loads
    core = _accel.core
    if core is None:
        return functools.partial(_limited_loads, limits=limits)
    return functools.partial(core.json_loads, **limits.keywords())


def _untyped_loads(data: bytes | bytearray | memoryview | str) -> object:
    if type(data) is not bytes and isinstance(data, bytes):
        # orjson refuses a bytes subclass; msgpack's and CBOR's loads take one.
        data = bytes(memoryview(data))  # its own bytes, whatever its __bytes__ says
    elif type(data) is not str and isinstance(data, str):
        data = str.__str__(data)
    if type(data) is not bytes and isinstance(data, memoryview):
        # orjson reads a released memoryview's freed buffer: copy it first
        # (tobytes refuses a released view with a ValueError that says so).
        data = data.tobytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(exc.msg, _byte_offset(data, exc.pos)) from None


def _floatstr(f: float) -> str:
    """orjson's float text: Python's repr, except `null` for non-finite values,
    no zero padding in negative exponents (`1e-7`, not `1e-07`), and fixed
    notation one decade further down (`0.00001`, not `1e-05`)."""
    if f != f or f in (float("inf"), float("-inf")):
        return "null"
    text = float.__repr__(f)
    if "e-" not in text:
        return text
    mantissa, exponent = text.split("e-")
    if exponent == "05":
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e-{exponent.lstrip('0')}"


def _intstr(i: int) -> str:
    if not -(2**63) <= i < 2**64:
        raise _Unencodable(_INT_RANGE, i)
    return int.__repr__(i)


def _key_text(key: object) -> object:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return "null" if key is None else ("true" if key else "false")
    if isinstance(key, float):
        return _floatstr(key)
    if isinstance(key, int):
        return _intstr(key)
    return key


def _text_keys(obj: object) -> object:
    """Keys turned into their JSON text first, so sorting compares that text (as orjson does)."""
    if isinstance(obj, dict):
        return {_key_text(k): _text_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_text_keys(v) for v in obj]
    return obj


def pure_dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    """The standard library's json, configured to write the same bytes as `dumps`."""

    def hook(value: object) -> object:
        return _model(value, default)

    # The pure-Python iterencode is the only one that takes a float formatter.
    make = _stdjson.encoder._make_iterencode  # type: ignore[attr-defined]
    chunks = make(
        {},
        hook,
        _stdjson.encoder.encode_basestring,
        None,
        _floatstr,
        ":",
        ",",
        sort_keys,
        False,
        True,
        _intstr=_intstr,
    )
    try:
        text = "".join(chunks(_text_keys(obj) if sort_keys else obj, 0))
        return text.encode()
    except _Unencodable as exc:
        raise EncodeError(exc.message, find_path(obj, exc.obj)) from None
    except UnicodeEncodeError:
        raise EncodeError("str is not valid UTF-8 (it holds a lone surrogate)", "$") from None
    except RecursionError:
        raise EncodeError("nesting deeper than the interpreter's recursion limit", "$") from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc), "$") from None


_OVERFLOW = "number is infinity when parsed as double"
# "-18446744073709551616" has 21 characters: longer texts are never 64-bit ints,
# and skipping int() for them also skips its quadratic conversion.
_MAX_INT_CHARS = 21
_INFINITIES = (float("inf"), float("-inf"))


class _Overflow(ValueError):
    """A number too large for a double; `pure_loads` finds where it is."""


def _parse_int(text: str) -> Any:
    if len(text) <= _MAX_INT_CHARS:
        v = int(text)
        if -(2**63) <= v < 2**64:
            return v
    return _parse_float(text)


def _parse_float(text: str) -> float:
    f = float(text)
    if f in _INFINITIES:
        raise _Overflow(_OVERFLOW)
    return f


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Strings (skipped whole) and numbers, in document order.
_TOKENS = re.compile(
    r'"(?:[^"\\]|\\.)*"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)', re.S
)
# Every escape in order; \u escapes of surrogates are captured (a high one with
# the escape after it). Outside strings valid JSON has no backslash, so a
# left-to-right scan stays aligned with the escapes.
_ESCAPES = re.compile(
    r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})(?:\\u([0-9a-fA-F]{4}))?|u([dD][c-fC-F][0-9a-fA-F]{2})|.)",
    re.S,
)
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")


def _overflow_at(text: str) -> int:
    """Where the first number too large for a double starts (what orjson reports)."""
    for m in _TOKENS.finditer(text):
        number = m.group(1)
        if number is not None and float(number) in _INFINITIES:
            return m.start(1)
    return 0


def _lone_surrogate(text: str) -> tuple[str, int] | None:
    """orjson's error for the first lone surrogate escape in `text`, or None."""
    for m in _ESCAPES.finditer(text):
        high, after, low = m.group(1), m.group(2), m.group(3)
        if low is not None:
            return "invalid high surrogate in string", m.start()
        if high is not None:
            if after is None:
                return "no low surrogate in string", m.start()
            if not 0xDC00 <= int(after, 16) <= 0xDFFF:
                return "invalid low surrogate in string", m.start()
    return None


def pure_loads(data: bytes | bytearray | memoryview | str) -> object:
    """Decode with the standard library's json (same results as `loads`)."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode()
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8", exc.start) from None
    if isinstance(data, str) and not data.isascii():
        try:
            data.encode()
        except UnicodeEncodeError:
            # orjson's rule: a str holding a lone surrogate is no JSON text.
            raise DecodeError("str is not valid UTF-8: surrogates not allowed", 0) from None
    # Each float is checked (a Python call, as each int already was): a regex or
    # translate pre-scan for overflow candidates measured slower on common documents.
    try:
        value = _stdjson.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_reject_constant,
        )
    except _stdjson.JSONDecodeError as exc:
        raise DecodeError(exc.msg, _byte_offset(text, exc.pos)) from None
    except _Overflow:
        raise DecodeError(_OVERFLOW, _byte_offset(text, _overflow_at(text))) from None
    except (ValueError, RecursionError) as exc:
        raise DecodeError(str(exc), 0) from None
    if "\\u" in text and _SURROGATE_HINT.search(text):
        lone = _lone_surrogate(text)
        if lone is not None:
            raise DecodeError(lone[0], _byte_offset(text, lone[1]))
    return value
