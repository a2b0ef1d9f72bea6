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
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from microstd.codec._deps import require
from microstd.codec._ext import Ext, Tag
from microstd.codec._paths import RELEASED, find_path, is_released
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


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode one msgpack object; trailing bytes are an error."""
    msgpack = require("msgpack")

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, bytearray or memoryview, got {type(data).__name__}")
    options: dict[str, Any] = {"timestamp": 3, "strict_map_key": False, "ext_hook": _ext_hook}
    try:
        try:
            return msgpack.unpackb(data, **options)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            # An array used as a map key: decode arrays as tuples so the key is
            # hashable, then turn every array outside keys back into a list.
            return _keys_to_tuples(msgpack.unpackb(data, use_list=False, **options))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # RecursionError: _keys_to_tuples on a document nested near the msgpack
        # package's own limit; the scan then reports the Rust codec's depth error.
        from microstd.codec._msgpack_scan import locate_error

        message, offset = locate_error(bytes(data))
        raise DecodeError(message or str(exc), offset) from None
