"""Codecs by content type: `get`, `register`, and the `microstd.codecs` entry points."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from microstd import _accel
from microstd.codec import _pure_cbor, _pure_msgpack, cbor, json, msgpack
from microstd.codec.base import Codec
from microstd.errors import InvalidArgument, UnknownContentType

__all__ = ["IMPLS", "get", "known", "normalize", "register"]

IMPLS = ("rust", "python")

_lock = threading.Lock()
# (impl, content type) -> codec. "rust" entries are what users get by default;
# third-party codecs registered without an impl answer to both.
_codecs: dict[tuple[str, str], Codec] = {}
_entry_points_loaded = False


def normalize(content_type: str) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def _passthrough_encode(obj: object) -> bytes:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode()
    from microstd.errors import EncodeError

    raise EncodeError(f"cannot encode {type(obj).__name__} as raw bytes; pass bytes or str", "$")


def _octet_decode(data: bytes) -> object:
    return bytes(data)


def _text_decode(data: bytes) -> object:
    from microstd.errors import DecodeError

    try:
        return bytes(data).decode()
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8", exc.start) from exc


def _core_or(name: str, fallback: Callable[..., Any]) -> Callable[..., Any]:
    """The Rust core's function `name`, else `fallback` (the module function
    that would forward to it): with the defaults both do the same, and the
    core's own function saves a Python frame per message."""
    core = _accel.core
    return fallback if core is None else getattr(core, name)


def _builtin_codecs() -> list[Codec]:
    octet = "application/octet-stream"
    x_msgpack = ("application/x-msgpack",)
    return [
        Codec(
            msgpack.CONTENT_TYPE,
            _core_or("msgpack_dumps", msgpack.dumps),
            _core_or("msgpack_loads", msgpack.loads),
            x_msgpack,
            "rust",
        ),
        Codec(
            cbor.CONTENT_TYPE,
            _core_or("cbor_dumps", cbor.dumps),
            _core_or("cbor_loads", cbor.loads),
            (),
            "rust",
        ),
        Codec(
            json.CONTENT_TYPE,
            json.dumps,
            _core_or("json_loads", json._untyped_loads),
            (),
            "rust",
        ),
        Codec(octet, _passthrough_encode, _octet_decode, (), "rust"),
        Codec("text/plain", _passthrough_encode, _text_decode, (), "rust"),
        Codec(
            msgpack.CONTENT_TYPE,
            _pure_msgpack.dumps,
            _pure_msgpack.loads,
            x_msgpack,
            "python",
        ),
        Codec(cbor.CONTENT_TYPE, _pure_cbor.dumps, _pure_cbor.loads, (), "python"),
        Codec(json.CONTENT_TYPE, json.pure_dumps, json.pure_loads, (), "python"),
        Codec(octet, _passthrough_encode, _octet_decode, (), "python"),
        Codec("text/plain", _passthrough_encode, _text_decode, (), "python"),
    ]


def _add(codec: Codec, impls: tuple[str, ...]) -> None:
    for impl in impls:
        for ct in codec.content_types:
            _codecs[(impl, normalize(ct))] = codec


for _codec in _builtin_codecs():
    _add(_codec, (_codec.impl,))


def register(codec: Codec, *, impl: str | None = None) -> None:
    """Add or replace a codec for each of its content types.

    With `impl=None` the codec answers for every implementation; pass
    `"rust"` or `"python"` to replace only one.
    """
    if impl is not None and impl not in IMPLS:
        raise InvalidArgument(f"impl must be 'rust' or 'python', got {impl!r}")
    with _lock:
        _add(codec, (impl,) if impl else IMPLS)


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        found = list(entry_points(group="microstd.codecs"))
    for ep in found:
        loaded = ep.load()
        codec = loaded() if callable(loaded) and not isinstance(loaded, Codec) else loaded
        if isinstance(codec, Codec):
            register(codec)


def get(content_type: str, *, impl: str = "rust") -> Codec:
    """The codec for `content_type`; `impl="python"` gives the pure baseline.

    Raises `UnknownContentType` naming the known content types.
    """
    # Every RPC asks for its codec twice: an already-normal content type is one dict hit.
    # (Keys are normalized, so a hit means normalizing would have found the same.)
    codec = _codecs.get((impl, content_type))
    if codec is not None:
        return codec
    if impl not in IMPLS:
        raise InvalidArgument(f"impl must be 'rust' or 'python', got {impl!r}")
    key = (impl, normalize(content_type))
    codec = _codecs.get(key)
    if codec is None:
        _load_entry_points()
        codec = _codecs.get(key)
    if codec is None:
        names = known()
        close = difflib.get_close_matches(key[1], names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownContentType(
            f"no codec for content type {content_type!r}; known: {', '.join(names)}.{hint}"
        )
    return codec


def known() -> list[str]:
    """Every registered content type, sorted."""
    return sorted({ct for _, ct in _codecs})
