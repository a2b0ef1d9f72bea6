"""A released memoryview gives a clear EncodeError (with its path) in every codec,
and a clear error (never a crash or a misleading message) when decoded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from microstd import _core
from microstd.codec import _pure_cbor, _pure_msgpack, json
from microstd.errors import EncodeError

ENCODERS: dict[str, Callable[[object], bytes]] = {
    "msgpack-rust": _core.msgpack_dumps,
    "msgpack-pure": _pure_msgpack.dumps,
    "cbor-rust": _core.cbor_dumps,
    "cbor-pure": _pure_cbor.dumps,
    "json-orjson": json.dumps,
    "json-pure": json.pure_dumps,
}
DECODERS: dict[str, Callable[[object], object]] = {
    "msgpack-rust": _core.msgpack_loads,
    "msgpack-pure": _pure_msgpack.loads,
    "cbor-rust": _core.cbor_loads,
    "cbor-pure": _pure_cbor.loads,
    "json-orjson": json.loads,
    "json-pure": json.pure_loads,
}


def _released() -> memoryview:
    view = memoryview(b"secret")
    view.release()
    return view


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoding_a_released_memoryview_is_an_encode_error(name: str) -> None:
    with pytest.raises(EncodeError) as info:
        ENCODERS[name]({"rows": [1, _released()]})
    assert "released memoryview" in info.value.message
    assert info.value.path == "$.rows[1]"
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoding_a_released_memoryview_says_so(name: str) -> None:
    with pytest.raises(ValueError, match="released memoryview"):
        DECODERS[name](_released())
