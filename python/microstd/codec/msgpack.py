"""msgpack, encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_msgpack`, which produces the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from microstd import _accel
from microstd.codec import _pure_msgpack, stream, typed
from microstd.codec._limits import Limits
from microstd.codec._plan import plan_for

__all__ = ["CONTENT_TYPE", "Decoder", "StreamDecoder", "dumps", "iter_loads", "loads"]

CONTENT_TYPE = "application/msgpack"


def dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    """Encode `obj` as msgpack.

    `default` is called with any object outside the type model and must
    return something encodable; `sort_keys` sorts map keys for a stable output.
    """
    return _pure_msgpack.dumps(obj, default=default, sort_keys=sort_keys)


ExtHook = Callable[[int, bytes], object]


def _untyped(
    data: bytes | bytearray | memoryview,
    ext_hook: ExtHook | None = None,
    limits: Limits | None = None,
) -> object:
    core = _accel.core
    if core is None:
        return _pure_msgpack.loads(data, ext_hook=ext_hook, limits=limits)
    if ext_hook is None and limits is None:
        return core.msgpack_loads(data)
    return core.msgpack_loads(data, ext_hook=ext_hook, **(limits.keywords() if limits else {}))


def loads(
    data: bytes | bytearray | memoryview,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    ext_hook: ExtHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> Any:
    """Decode one msgpack object; trailing bytes are an error.

    With `type=T` the result is checked and built as a `T` (a dataclass,
    `list[Item]`, ...); a mismatch raises `ValidationError` with its path.
    `ext_hook(code, data)` builds the value of extension types other than
    timestamps (else they decode to `codec.Ext`).

    Limits for untrusted input (each refused with a `DecodeError` at its
    offset): `max_container_len` items per array or map, `max_str_len` bytes
    per str, bytes or extension, `max_depth` levels of nesting (at most 256),
    `strict_keys` (map keys must be str or int), `unique_keys` (a key may not
    repeat within a map).
    """
    limits = Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
    checked = limits if limits.given else None
    if type is None:
        return _untyped(data, ext_hook, checked)
    plan = plan_for(type)
    if plan.core is not None and ext_hook is None and checked is None:
        return plan.core.decode_msgpack(data, forbid_unknown_fields)
    value = _untyped(data, ext_hook, checked)
    return typed.run_plan(plan, value, strings=False, forbid_unknown_fields=forbid_unknown_fields)


# The Python-level functions, also when the core replaces them (tests compare the two).
_py_dumps, _py_loads = dumps, loads
if _accel.core is not None:
    # With the core, the public functions are its own: the keywords are parsed
    # in Rust and a call costs no Python frame (the wrapper this replaces took
    # ~220 ns, a third of a small message's decode). The functions above are
    # the same API for when the core is missing.
    dumps = _accel.core.msgpack_dumps
    loads = _accel.core.msgpack_loads


def Decoder(
    type: Any,
    *,
    forbid_unknown_fields: bool = False,
    ext_hook: ExtHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> typed.Decoder[Any]:
    """A reusable decoder of msgpack into `type`: `Decoder(T).decode(data)`.

    `ext_hook` and the limits for untrusted input are those of `loads`; with
    any of them set, each message is decoded with them checked, then built
    as a `T` (two passes, as `loads(type=T, ...)` takes).
    """
    return typed.format_decoder(
        type,
        untyped=_untyped,
        direct="decode_msgpack",
        forbid_unknown_fields=forbid_unknown_fields,
        limits=Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys),
        hooks={"ext_hook": ext_hook},
    )


def _next(ext_hook: ExtHook | None, limits: Limits) -> stream.Next:
    core = _accel.core
    if core is None:
        checked = limits if limits.given else None
        return functools.partial(_pure_msgpack.next_object, ext_hook=ext_hook, limits=checked)
    if ext_hook is None and not limits.given:
        return core.msgpack_next  # type: ignore[no-any-return]
    return functools.partial(core.msgpack_next, ext_hook=ext_hook, **limits.keywords())


def StreamDecoder(
    type: Any = None,
    *,
    forbid_unknown_fields: bool = False,
    ext_hook: ExtHook | None = None,
    max_buffer_size: int = stream.DEFAULT_MAX_BUFFER,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> stream.StreamDecoder[Any]:
    """An incremental decoder of a msgpack stream: `feed(bytes)`, then iterate."""
    return stream.StreamDecoder(
        _next(
            ext_hook, Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
        ),
        convert=typed.converter(type, strings=False, forbid_unknown_fields=forbid_unknown_fields),
        max_buffer_size=max_buffer_size,
    )


def iter_loads(
    buffer: bytes | bytearray | memoryview,
    *,
    type: Any = None,
    forbid_unknown_fields: bool = False,
    ext_hook: ExtHook | None = None,
    max_container_len: int | None = None,
    max_str_len: int | None = None,
    max_depth: int | None = None,
    strict_keys: bool = False,
    unique_keys: bool = False,
) -> Iterator[Any]:
    """Every object of a buffer of concatenated msgpack objects, in order."""
    convert = typed.converter(type, strings=False, forbid_unknown_fields=forbid_unknown_fields)
    limits = Limits(max_container_len, max_str_len, max_depth, strict_keys, unique_keys)
    return stream.iter_objects(_next(ext_hook, limits), buffer, convert)
