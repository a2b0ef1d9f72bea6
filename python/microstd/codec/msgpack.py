"""msgpack, encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_msgpack`, which produces the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from microstd import _accel
from microstd.codec import _pure_msgpack

__all__ = ["CONTENT_TYPE", "dumps", "loads"]

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


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode one msgpack object; trailing bytes are an error."""
    core = _accel.core
    if core is None:
        return _pure_msgpack.loads(data)
    return core.msgpack_loads(data)
