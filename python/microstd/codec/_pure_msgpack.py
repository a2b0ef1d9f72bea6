"""The pure baseline for msgpack: the `msgpack` package, configured to give
the same bytes as the Rust codec. PLACEHOLDER: to be completed with the codec."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["dumps", "loads"]


def dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes:
    import msgpack

    result: bytes = msgpack.packb(obj, default=default, datetime=True)
    return result


def loads(data: bytes | bytearray | memoryview) -> object:
    import msgpack

    return msgpack.unpackb(data, timestamp=3, strict_map_key=False)
