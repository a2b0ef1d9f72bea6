"""msgpack, encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_msgpack`, which produces the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microstd import _accel
from microstd.codec import _pure_msgpack, typed
from microstd.codec._plan import plan_for

__all__ = ["CONTENT_TYPE", "Decoder", "dumps", "loads"]

CONTENT_TYPE = "application/msgpack"


def dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    """Encode `obj` as msgpack.

    `default` is called with any object outside the type model and must
    return something encodable; `sort_keys` sorts map keys for a stable output.
    """
    core = _accel.core
    if core is None:
        return _pure_msgpack.dumps(obj, default=default, sort_keys=sort_keys)
    result: bytes = core.msgpack_dumps(obj, default=default, sort_keys=sort_keys)
    return result


def _untyped(data: bytes | bytearray | memoryview) -> object:
    core = _accel.core
    if core is None:
        return _pure_msgpack.loads(data)
    return core.msgpack_loads(data)


def loads(
    data: bytes | bytearray | memoryview, *, type: Any = None, forbid_unknown_fields: bool = False
) -> Any:
    """Decode one msgpack object; trailing bytes are an error.

    With `type=T` the result is checked and built as a `T` (a dataclass,
    `list[Item]`, ...); a mismatch raises `ValidationError` with its path.
    """
    core = _accel.core
    if type is None:
        return _pure_msgpack.loads(data) if core is None else core.msgpack_loads(data)
    plan = plan_for(type)
    if plan.core is not None:
        return plan.core.decode_msgpack(data, forbid_unknown_fields)
    return typed.run_plan(
        plan, _untyped(data), strings=False, forbid_unknown_fields=forbid_unknown_fields
    )


def Decoder(type: Any, *, forbid_unknown_fields: bool = False) -> typed.Decoder[Any]:
    """A reusable decoder of msgpack into `type`: `Decoder(T).decode(data)`."""
    return typed.Decoder(
        type,
        loads=_untyped,
        strings=False,
        forbid_unknown_fields=forbid_unknown_fields,
        direct="decode_msgpack",
    )
