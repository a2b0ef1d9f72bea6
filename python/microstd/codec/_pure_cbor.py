"""The pure baseline for CBOR: the `cbor2` package, configured to give the
same bytes as the Rust codec. PLACEHOLDER: to be completed with the codec."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["dumps", "loads"]


def dumps(
    obj: object, *, canonical: bool = False, default: Callable[[object], object] | None = None
) -> bytes:
    import cbor2

    result: bytes = cbor2.dumps(obj, canonical=canonical)
    return result


def loads(data: bytes | bytearray | memoryview) -> object:
    import cbor2

    return cbor2.loads(data)
