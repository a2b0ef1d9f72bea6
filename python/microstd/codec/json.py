"""JSON through orjson, with the type model JSON can carry.

PLACEHOLDER: the full type model (Decimal, sets, bytes, ...) lands with the codec.
"""

from __future__ import annotations

import orjson

from microstd.errors import DecodeError, EncodeError

__all__ = ["CONTENT_TYPE", "dumps", "loads"]

CONTENT_TYPE = "application/json"


def dumps(obj: object) -> bytes:
    """Encode `obj` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        raise EncodeError(str(exc), "$") from exc


def loads(data: bytes | bytearray | memoryview | str) -> object:
    """Decode one JSON document."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(exc.msg, exc.pos) from exc


def pure_dumps(obj: object) -> bytes:
    """The standard library's json, configured to give the same bytes as `dumps`."""
    import json as stdjson

    return stdjson.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def pure_loads(data: bytes | bytearray | memoryview | str) -> object:
    """Decode with the standard library's json."""
    import json as stdjson

    try:
        return stdjson.loads(bytes(data) if not isinstance(data, str) else data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc), getattr(exc, "pos", 0) or 0) from exc
