"""Streaming decoders (feed, then iterate), iter_loads, and the ext/tag hooks,
on the Rust core and on the pure twins."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from microstd import _core, codec
from microstd.codec import Ext, Tag, _pure_cbor, _pure_msgpack, stream
from microstd.errors import DecodeError, ValidationError

NEXT: dict[str, Callable[..., Any]] = {
    "msgpack-rust": _core.msgpack_next,
    "msgpack-python": _pure_msgpack.next_object,
    "cbor-rust": _core.cbor_next,
    "cbor-python": _pure_cbor.next_item,
}
DUMPS = {"msgpack": codec.msgpack.dumps, "cbor": codec.cbor.dumps}
VALUES: list[object] = [
    {"id": 1, "tags": ["a", "b"], "nested": {"x": [1.5, None, True]}},
    [],
    "é" * 40,
    2**40,
    b"\x00" * 300,
    {"big": list(range(100))},
    None,
]


@pytest.mark.parametrize("name", sorted(NEXT))
def test_any_split_of_the_stream_yields_every_object_once(name: str) -> None:
    data = b"".join(DUMPS[name.split("-")[0]](v) for v in VALUES)
    rng = random.Random(7)
    for _ in range(30):
        decoder: stream.StreamDecoder[Any] = stream.StreamDecoder(NEXT[name])
        got: list[object] = []
        pos = 0
        while pos < len(data):
            step = rng.randrange(1, 40)
            decoder.feed(data[pos : pos + step])
            pos += step
            got.extend(decoder)
        assert got == VALUES
        assert decoder.pending == 0


@pytest.mark.parametrize("name", sorted(NEXT))
def test_a_bad_byte_is_a_decode_error_with_its_stream_offset(name: str) -> None:
    good = DUMPS[name.split("-")[0]]([1, 2])
    bad = b"\xc1" if name.startswith("msgpack") else b"\xff"
    decoder: stream.StreamDecoder[Any] = stream.StreamDecoder(NEXT[name])
    decoder.feed(good + bad)
    assert next(decoder) == [1, 2]
    with pytest.raises(DecodeError) as info:
        next(decoder)
    if name == "cbor-python":
        # cbor2 reports where it stopped reading: just past the bad byte.
        assert info.value.offset == len(good) + 1
    else:
        assert info.value.offset == len(good)


@pytest.mark.parametrize("name", sorted(NEXT))
def test_an_object_larger_than_the_buffer_limit_is_refused(name: str) -> None:
    # A header that promises 2**31 items must not make the decoder buffer for ever.
    header = b"\xdd\x80\x00\x00\x00" if name.startswith("msgpack") else b"\x9a\x80\x00\x00\x00"
    decoder: stream.StreamDecoder[Any] = stream.StreamDecoder(NEXT[name], max_buffer_size=1000)
    decoder.feed(header + b"\x01" * 500)
    assert list(decoder) == []
    decoder.feed(b"\x01" * 600)
    with pytest.raises(DecodeError, match="max_buffer_size"):
        next(decoder)


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_iter_loads_and_typed_streams(fmt: str) -> None:
    module = getattr(codec, fmt)
    data = b"".join(module.dumps({"x": i, "y": str(i)}) for i in range(5))
    assert list(module.iter_loads(data)) == [{"x": i, "y": str(i)} for i in range(5)]
    assert [p.x for p in module.iter_loads(data, type=_Pair)] == list(range(5))
    with pytest.raises(DecodeError, match="incomplete"):
        list(module.iter_loads(data[:-1]))
    decoder = module.StreamDecoder(type=_Pair)
    decoder.feed(data)
    assert [p.y for p in decoder] == [str(i) for i in range(5)]
    decoder.feed(module.dumps({"x": "nope", "y": "1"}))
    with pytest.raises(ValidationError) as info:
        next(decoder)
    assert info.value.path == "$.x"


def test_ndjson_streams() -> None:
    lines = b'{"x": 1, "y": "a"}\n\n{"x": 2, "y": "b"}\n{"x": 3,'
    decoder = codec.json.StreamDecoder()
    decoder.feed(lines)
    assert [d["x"] for d in decoder] == [1, 2]
    decoder.feed(b' "y": "c"}\n')
    assert next(decoder) == {"x": 3, "y": "c"}
    assert [
        p.x for p in codec.json.iter_loads(b'{"x": 1, "y": "a"}\n{"x": 2, "y": "b"}', type=_Pair)
    ] == [1, 2]
    with pytest.raises(DecodeError) as info:
        list(codec.json.iter_loads(b'{"x": 1}\n{"x": ]\n'))
    assert info.value.offset == len(b'{"x": 1}\n{"x": ')


@dataclass
class _Pair:
    x: int
    y: str


class Money:
    """Not a dataclass (those encode as maps): only `default=` can write it."""

    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    def __hash__(self) -> int:
        return hash(self.cents)


def _money_default(obj: object) -> object:
    if isinstance(obj, Money):
        return Ext(42, obj.cents.to_bytes(8, "big"))
    raise TypeError


def _money_ext(code: int, data: bytes) -> object:
    return Money(int.from_bytes(data, "big")) if code == 42 else Ext(code, data)


MSGPACK_LOADS = {"rust": _core.msgpack_loads, "python": _pure_msgpack.loads}
CBOR_LOADS = {"rust": _core.cbor_loads, "python": _pure_cbor.loads}


@pytest.mark.parametrize("impl", ["rust", "python"])
def test_ext_hook_reads_back_what_default_wrote(impl: str) -> None:
    data = codec.msgpack.dumps(
        {"price": Money(1999), "other": Ext(7, b"x")}, default=_money_default
    )
    value = MSGPACK_LOADS[impl](data, ext_hook=_money_ext)
    assert value == {"price": Money(1999), "other": Ext(7, b"x")}
    assert MSGPACK_LOADS[impl](data)["price"] == Ext(42, (1999).to_bytes(8, "big"))
    with pytest.raises(ZeroDivisionError):  # the hook's own error passes through
        MSGPACK_LOADS[impl](data, ext_hook=lambda code, data: 1 / 0)


@pytest.mark.parametrize("impl", ["rust", "python"])
def test_tag_hook_builds_unknown_tags(impl: str) -> None:
    data = codec.cbor.dumps([Tag(40000, [1, 2]), Tag(1, 0)])
    value = CBOR_LOADS[impl](data, tag_hook=lambda tag, v: ("tagged", tag, v))
    assert value[0] == ("tagged", 40000, [1, 2])
    assert value[1].year == 1970  # a tag of the type model is not the hook's
    assert CBOR_LOADS[impl](data)[0] == Tag(40000, [1, 2])


def test_hooks_through_the_format_modules() -> None:
    data = codec.msgpack.dumps([Money(5)], default=_money_default)
    assert codec.msgpack.loads(data, ext_hook=_money_ext) == [Money(5)]
    decoder = codec.msgpack.StreamDecoder(ext_hook=_money_ext)
    decoder.feed(data * 2)
    assert list(decoder) == [[Money(5)], [Money(5)]]
    tagged = codec.cbor.dumps(Tag(40000, "x"))
    assert codec.cbor.loads(tagged, tag_hook=lambda t, v: v.upper()) == "X"
    assert list(codec.cbor.iter_loads(tagged * 2, tag_hook=lambda t, v: v)) == ["x", "x"]
    hook = functools.partial(_money_ext)
    assert codec.msgpack.loads(data, type=list[Any], ext_hook=hook) == [Money(5)]


PURE_SNIPPET = """
import dataclasses
from microstd import _accel, codec
assert _accel.core is None
@dataclasses.dataclass
class P:
    x: int
data = b"".join(codec.msgpack.dumps({"x": i}) for i in range(3))
assert [p.x for p in codec.msgpack.iter_loads(data, type=P)] == [0, 1, 2]
d = codec.cbor.StreamDecoder(type=P)
d.feed(codec.cbor.dumps({"x": 5}) + codec.cbor.dumps({"x": 6})[:1])
assert [p.x for p in d] == [5]
assert codec.msgpack.loads(codec.msgpack.dumps([{"x": 1}]), type=list[P]) == [P(1)]
assert codec.msgpack.Decoder(P).decode(codec.msgpack.dumps({"x": 2})) == P(2)
assert codec.json.loads(b'{"x": 3}', type=P) == P(3)
assert codec.msgpack.loads(codec.msgpack.dumps(codec.Timestamp(0, 1))) == codec.Timestamp(0, 1)
print("OK")
"""


def test_the_format_modules_on_the_pure_twins() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MICROSTD_PURE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PURE_SNIPPET],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "OK"
