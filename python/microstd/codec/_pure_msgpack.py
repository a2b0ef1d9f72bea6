"""The pure baseline for msgpack: the `msgpack` package, configured to give
the same bytes as the Rust codec on the whole type model.

`packb` carries the plain types itself; a `default` hook maps the rest of the
model (aware datetime, date, UUID, Decimal, Enum, dataclass, set, Ext) onto
what `packb` understands. Errors are translated into `EncodeError` /
`DecodeError`; their path or offset is found by a second, slower walk that
only runs once something has already failed.

Known difference: nesting limits are the package's own (511 levels when
encoding, 1024 when decoding), not `microstd._core.MAX_DEPTH`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from microstd.codec._deps import require
from microstd.codec._ext import Ext, Tag
from microstd.codec._limits import Limits
from microstd.codec._paths import RELEASED, find_path, is_released
from microstd.codec._timestamp import Timestamp
from microstd.errors import DecodeError, EncodeError

__all__ = ["dumps", "loads"]

_NAIVE = "cannot encode a naive datetime: attach a tzinfo (e.g. datetime.timezone.utc)"
_SURROGATE = "str is not valid UTF-8 (it holds a lone surrogate)"
_INT_RANGE = "int out of range for msgpack (must be in [-2**63, 2**64))"


class _Unencodable(Exception):
    """Raised inside the hook; carries the EncodeError message out of `packb`."""

    def __init__(self, message: str, obj: object) -> None:
        super().__init__(message)
        self.message = message
        self.obj = obj


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _aware_timestamp(obj: _dt.datetime) -> Any:
    import msgpack

    return msgpack.Timestamp.from_datetime(obj)


def _model(obj: object, user_default: Callable[[object], object] | None) -> object:
    """Map one object outside packb's native types onto them."""
    if isinstance(obj, int):
        # packb hands ints outside 64 bits to the hook.
        raise _Unencodable(_INT_RANGE, obj)
    if isinstance(obj, Timestamp):
        import msgpack

        return msgpack.Timestamp(obj.seconds, obj.nanoseconds)
    if isinstance(obj, Ext):
        import msgpack

        if obj.code >= 0:
            return msgpack.ExtType(obj.code, obj.data)
        # ExtType's constructor refuses the reserved negative codes that the
        # packer itself writes fine; build the namedtuple without it.
        return tuple.__new__(msgpack.ExtType, (obj.code, obj.data))
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, _dt.datetime):
        if obj.utcoffset() is None:
            if user_default is not None:
                return user_default(obj)
            raise _Unencodable(_NAIVE, obj)
        return _aware_timestamp(obj)
    if isinstance(obj, _dt.date):
        return obj.isoformat()
    if isinstance(obj, (uuid.UUID, Decimal)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if user_default is not None:
        return user_default(obj)
    if isinstance(obj, Tag):
        raise _Unencodable("cannot encode microstd.codec.Tag (a CBOR tag) as msgpack", obj)
    raise _Unencodable(f"cannot encode object of type {_type_name(obj)}", obj)


def _sort_items(items: list[tuple[Any, Any]], pack: Callable[[object], bytes]) -> list[Any]:
    """The Rust codec's key order: code points when all keys are str, else encoded bytes."""
    if all(isinstance(k, str) for k, _ in items):
        return sorted(items, key=lambda kv: kv[0])
    return sorted(items, key=lambda kv: pack(kv[0]))


def _sorted_copy(
    obj: object, pack: Callable[[object], bytes], hook: Callable[[object], Any]
) -> Any:
    """`obj` with every mapping rebuilt in sort_keys order (packb cannot sort)."""
    import msgpack

    # ExtType is a namedtuple: test the natives before tuple.
    native = (str, int, float, bytes, bytearray, memoryview, msgpack.ExtType, msgpack.Timestamp)
    if obj is None or isinstance(obj, native):
        return obj
    if isinstance(obj, dict):
        items = [(k, _sorted_copy(v, pack, hook)) for k, v in obj.items()]
        return dict(_sort_items(items, pack))
    if isinstance(obj, (list, tuple)):
        return [_sorted_copy(v, pack, hook) for v in obj]
    # Anything else goes through the hook now, so the dicts it returns get sorted too.
    return _sorted_copy(hook(obj), pack, hook)


def dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    """Encode `obj` as msgpack, byte for byte what the Rust codec writes."""
    msgpack = require("msgpack")

    def hook(value: object) -> object:
        return _model(value, default)

    try:
        if sort_keys:

            def pack(key: object) -> bytes:
                return dumps(key, default=default, sort_keys=True)

            obj = _sorted_copy(obj, pack, hook)
        result: bytes = msgpack.packb(obj, default=hook, datetime=False)
    except _Unencodable as exc:
        raise EncodeError(exc.message, _locate(obj, exc.obj)) from None
    except UnicodeEncodeError as exc:
        raise EncodeError(_SURROGATE, _locate(obj, exc.object, by_value=True)) from None
    except OverflowError:
        raise EncodeError(_INT_RANGE, _locate_int(obj)) from None
    except RecursionError:
        # sort_keys copies the object recursively before packb sees it.
        raise EncodeError("nesting deeper than the interpreter's recursion limit", "$") from None
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise EncodeError("nesting deeper than the msgpack package's limit", "$") from None
        if "released memoryview" in str(exc):
            raise EncodeError(RELEASED, find_path(obj, pred=is_released)) from None
        raise
    return result


def _locate(root: object, target: object, *, by_value: bool = False) -> str:
    """The path of `target` inside `root` (an error path; runs only after a failure)."""

    def pred(o: object) -> bool:
        return o is target or (by_value and isinstance(o, str) and o == target)

    return find_path(root, pred=pred)


def _locate_int(root: object) -> str:
    def pred(o: object) -> bool:
        return isinstance(o, int) and not isinstance(o, bool) and not -(2**63) <= o < 2**64

    return find_path(root, pred=pred)


# The timestamp extension's headers: fixext 4 and 8, and ext 8/16/32 of 12 bytes.
_MAY_HOLD_TIMESTAMP = re.compile(
    rb"[\xd6\xd7]\xff|\xc7\x0c\xff|\xc8\x00\x0c\xff|\xc9\x00\x00\x00\x0c\xff"
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _instant(seconds: int, nanoseconds: int) -> object:
    """A datetime when it holds the instant exactly, else a Timestamp (as the Rust codec)."""
    if nanoseconds % 1000 == 0 and -62_135_596_800 <= seconds < 253_402_300_800:
        return _EPOCH + _dt.timedelta(seconds=seconds, microseconds=nanoseconds // 1000)
    return Timestamp(seconds, nanoseconds)


def _instants(obj: object, raw: type) -> Any:
    """`obj` with the msgpack package's Timestamps replaced by ours or datetimes."""
    t = type(obj)
    if t is raw:
        return _instant(obj.seconds, obj.nanoseconds)  # type: ignore[attr-defined]
    if t is list:
        return [_instants(v, raw) for v in obj]  # type: ignore[attr-defined]
    if t is tuple:
        return tuple(_instants(v, raw) for v in obj)  # type: ignore[attr-defined]
    if t is dict:
        return {_instants(k, raw): _instants(v, raw) for k, v in obj.items()}  # type: ignore[attr-defined]
    return obj


def _ext_hook(code: int, data: bytes) -> Ext:
    return Ext(code, data)


def _keys_to_tuples(obj: object, is_key: bool = False) -> Any:
    """Undo use_list=False: lists everywhere except inside map keys."""
    if isinstance(obj, tuple):
        if is_key:
            return tuple(_keys_to_tuples(v, True) for v in obj)
        return [_keys_to_tuples(v) for v in obj]
    if isinstance(obj, dict):
        return {_keys_to_tuples(k, True): _keys_to_tuples(v) for k, v in obj.items()}
    return obj


def next_object(
    data: bytes,
    start: int,
    *,
    ext_hook: Callable[[int, bytes], object] | None = None,
    limits: Limits | None = None,
) -> tuple[object, int] | None:
    """The object of a msgpack stream starting at `start`: `(object, end)`, or
    None when `data` ends before it does (the twin of `_core.msgpack_next`)."""
    from microstd.codec._msgpack_scan import object_end

    end = object_end(data, start, limits)
    if end is None:
        return None
    return loads(data[start:end], ext_hook=ext_hook), end


def loads(
    data: bytes | bytearray | memoryview,
    *,
    ext_hook: Callable[[int, bytes], object] | None = None,
    limits: Limits | None = None,
) -> object:
    """Decode one msgpack object; trailing bytes are an error.

    `ext_hook(code, data)` builds the value of extension types other than
    timestamps (else they decode to `Ext`).
    """
    msgpack = require("msgpack")

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")
    # Timestamps are read raw (and made datetimes or Timestamps after) only
    # when the input may hold one: the common case keeps packb's own datetimes.
    if isinstance(data, memoryview):
        data = data.tobytes()  # a released view raises ValueError saying so
    if limits is not None and limits.given:
        # The package has no depth or key limits: the scanner checks them all
        # first, with the Rust decoder's messages and offsets.
        from microstd.codec._msgpack_scan import locate_error

        message, offset = locate_error(bytes(data), limits)
        if message is not None:
            raise DecodeError(message, offset)
    raw_times = _MAY_HOLD_TIMESTAMP.search(data) is not None
    options: dict[str, Any] = {
        "timestamp": 0 if raw_times else 3,
        "strict_map_key": False,
        "ext_hook": _ext_hook if ext_hook is None else ext_hook,
    }
    try:
        try:
            value = msgpack.unpackb(data, **options)
            return _instants(value, msgpack.Timestamp) if raw_times else value
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            # An array used as a map key: decode arrays as tuples so the key is
            # hashable, then turn every array outside keys back into a list.
            value = _keys_to_tuples(msgpack.unpackb(data, use_list=False, **options))
            return _instants(value, msgpack.Timestamp) if raw_times else value
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # RecursionError: _keys_to_tuples on a document nested near the msgpack
        # package's own limit; the scan then reports the Rust codec's depth error.
        from microstd.codec._msgpack_scan import locate_error

        message, offset = locate_error(bytes(data))
        raise DecodeError(message or str(exc), offset) from None
