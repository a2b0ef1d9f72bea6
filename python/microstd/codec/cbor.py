"""CBOR (RFC 8949), encoded and decoded by the Rust core.

Without the core (or with `MICROSTD_PURE` set) the same functions run on the
pure baseline in `_pure_cbor`, which produces the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from microstd import _accel
from microstd.codec import _pure_cbor

__all__ = ["CONTENT_TYPE", "dumps", "loads"]

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


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode one CBOR data item; trailing bytes are an error."""
    core = _accel.core
    if core is None:
        return _pure_cbor.loads(data)
    return core.cbor_loads(data)
