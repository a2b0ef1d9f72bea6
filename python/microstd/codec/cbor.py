"""CBOR (RFC 8949), encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_cbor`, which produces the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microstd import _accel
from microstd.codec import _pure_cbor, typed
from microstd.codec._plan import plan_for

__all__ = ["CONTENT_TYPE", "Decoder", "dumps", "loads"]

CONTENT_TYPE = "application/cbor"


def dumps(
    obj: object, *, canonical: bool = False, default: Callable[[object], object] | None = None
) -> bytes:
    """Encode `obj` as CBOR.

    `canonical=True` gives the deterministic encoding of RFC 8949 section
    4.2.1: preferred serialization, shortest floats, map keys sorted by their
    encoded bytes.
    """
    core = _accel.core
    if core is None:
        return _pure_cbor.dumps(obj, canonical=canonical, default=default)
    result: bytes = core.cbor_dumps(obj, canonical=canonical, default=default)
    return result


def _untyped(data: bytes | bytearray | memoryview) -> object:
    core = _accel.core
    if core is None:
        return _pure_cbor.loads(data)
    return core.cbor_loads(data)


def loads(
    data: bytes | bytearray | memoryview, *, type: Any = None, forbid_unknown_fields: bool = False
) -> Any:
    """Decode one CBOR data item; trailing bytes are an error.

    With `type=T` the result is checked and built as a `T`; a mismatch raises
    `ValidationError` with its path.
    """
    core = _accel.core
    value = _pure_cbor.loads(data) if core is None else core.cbor_loads(data)
    if type is None:
        return value
    return typed.run_plan(
        plan_for(type), value, strings=False, forbid_unknown_fields=forbid_unknown_fields
    )


def Decoder(type: Any, *, forbid_unknown_fields: bool = False) -> typed.Decoder[Any]:
    """A reusable decoder of CBOR into `type`: `Decoder(T).decode(data)`."""
    return typed.Decoder(
        type, loads=_untyped, strings=False, forbid_unknown_fields=forbid_unknown_fields
    )
