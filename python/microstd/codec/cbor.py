"""CBOR (RFC 8949), encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_cbor`, which produces the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from microstd import _accel
from microstd.codec import _pure_cbor, stream, typed
from microstd.codec._limits import Limits
from microstd.codec._plan import plan_for

__all__ = ["CONTENT_TYPE", "Decoder", "StreamDecoder", "dumps", "iter_loads", "loads"]

CONTENT_TYPE = "application/cbor"


def dumps(
    obj: object, *, canonical: bool = False, default: Callable[[object], object] | None = None
) -> bytes:
    """Encode `obj` as CBOR.

    `canonical=True` gives the deterministic encoding of RFC 8949 section
    4.2.1: preferred serialization, shortest floats, map keys sorted by their
    encoded bytes.
    """
    return _pure_cbor.dumps(obj, canonical=canonical, default=default)


TagHook = Callable[[int, object], object]


def _untyped(
    data: bytes | bytearray | memoryview,
    tag_hook: TagHook | None = None,
    limits: Limits | None = None,
) -> object:
    core = _accel.core
    if core is None:
        return _pure_cbor.loads(data, tag_hook=tag_hook, limits=limits)
    if tag_hook is None and limits is None:
        return core.cbor_loads(data)
    return core.cbor_loads(data, tag_hook=tag_hook, **(limits.keywords() if limits else {}))


def loads(
    data: bytes | bytearray | memoryview,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    tag_hook: TagHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> Any:
    """Decode one CBOR data item; trailing bytes are an error.

    With `type=T` the result is checked and built as a `T`; a mismatch raises
    `ValidationError` with its path. `tag_hook(tag, value)` builds the value
    of tags outside the type model (else they decode to `codec.Tag`).

    Limits for untrusted input (each refused with a `DecodeError` at its
    offset): `max_container_len` items per array or map, `max_str_len` bytes
    per str, bytes or extension, `max_depth` levels of nesting (at most 256),
    `strict_keys` (map keys must be str or int), `unique_keys` (a key may not
    repeat within a map).
    """
    limits = Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
    value = _untyped(data, tag_hook, limits if limits.given else None)
    if type is None:
        return value
    return typed.run_plan(
        plan_for(type), value, strings=False, forbid_unknown_fields=forbid_unknown_fields
    )


# The Python-level functions, also when the core replaces them (tests compare the two).
_py_dumps, _py_loads = dumps, loads
if _accel.core is not None:
    # With the core, the public functions are its own (see `msgpack.py`); the
    # functions above are the same API for when the core is missing.
    dumps = _accel.core.cbor_dumps
    loads = _accel.core.cbor_loads


def Decoder(
    type: Any,
    *,
    forbid_unknown_fields: bool = False,
    tag_hook: TagHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> typed.Decoder[Any]:
    """A reusable decoder of CBOR into `type`: `Decoder(T).decode(data)`.

    `tag_hook` and the limits for untrusted input are those of `loads`; with
    any of them set, each message is decoded with them checked, then built
    as a `T` (two passes, as `loads(type=T, ...)` takes).
    """
    return typed.format_decoder(
        type,
        untyped=_untyped,
        direct="decode_cbor",
        forbid_unknown_fields=forbid_unknown_fields,
        limits=Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys),
        hooks={"tag_hook": tag_hook},
    )


def _next(tag_hook: TagHook | None, limits: Limits) -> stream.Next:
    core = _accel.core
    if core is None:
        checked = limits if limits.given else None
        return functools.partial(_pure_cbor.next_item, tag_hook=tag_hook, limits=checked)
    if tag_hook is None and not limits.given:
        return core.cbor_next  # type: ignore[no-any-return]
    return functools.partial(core.cbor_next, tag_hook=tag_hook, **limits.keywords())


def StreamDecoder(
    type: Any = None,
    *,
    forbid_unknown_fields: bool = False,
    tag_hook: TagHook | None = None,
    max_buffer_size: int = stream.DEFAULT_MAX_BUFFER,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> stream.StreamDecoder[Any]:
    """An incremental decoder of a CBOR sequence (RFC 8742): `feed(bytes)`, then iterate."""
    return stream.StreamDecoder(
        _next(
            tag_hook, Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
        ),
        convert=typed.converter(type, strings=False, forbid_unknown_fields=forbid_unknown_fields),
        max_buffer_size=max_buffer_size,
    )


def iter_loads(
    buffer: bytes | bytearray | memoryview,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    tag_hook: TagHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> Iterator[Any]:
    """Every item of a CBOR sequence (RFC 8742) held whole in `buffer`, in order."""
    convert = typed.converter(type, strings=False, forbid_unknown_fields=forbid_unknown_fields)
    limits = Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
    return stream.iter_objects(_next(tag_hook, limits), buffer, convert)
