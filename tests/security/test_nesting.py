"""Deeply nested input is a DecodeError in every decoder, never a RecursionError."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from microstd import _core
from microstd.codec import _pure_cbor, _pure_msgpack, json
from microstd.errors import DecodeError

DECODERS: dict[str, tuple[Callable[[bytes], object], bytes, bytes]] = {
    # name: (loads, one nesting level, innermost item)
    "msgpack-rust": (_core.msgpack_loads, b"\x91", b"\x81\x91\x01\x02"),
    "msgpack-pure": (_pure_msgpack.loads, b"\x91", b"\x81\x91\x01\x02"),
    "cbor-rust": (_core.cbor_loads, b"\x81", b"\xa1\x81\x01\x02"),
    "cbor-pure": (_pure_cbor.loads, b"\x81", b"\xa1\x81\x01\x02"),
    "json-orjson": (json.loads, b"[", b"1"),
    "json-pure": (json.pure_loads, b"[", b"1"),
}


@pytest.mark.parametrize("depth", [1100, 5000, 100_000])
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_deep_nesting_is_a_decode_error(name: str, depth: int) -> None:
    loads, level, inner = DECODERS[name]
    data = level * depth + inner
    if name.startswith("json"):
        data += b"]" * depth
    with pytest.raises(DecodeError):
        loads(data)


@pytest.mark.parametrize("depth", [900, 1000])
def test_pure_msgpack_near_the_package_limit(depth: int) -> None:
    # Undoing the tuple keys recursed past the interpreter's limit: a RecursionError
    # escaped. Now the scanner reports the Rust codec's error and offset.
    loads, level, inner = DECODERS["msgpack-pure"]
    with pytest.raises(DecodeError) as info:
        loads(level * depth + inner)
    assert info.value.message == "nesting deeper than 256 levels"
    assert info.value.offset == 256
