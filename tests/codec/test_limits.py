"""Per-call limits on untrusted input, msgpack and CBOR, Rust core and twin:
the same errors (message and offset) from both."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from microstd import _core, codec
from microstd.codec import _pure_cbor, _pure_msgpack
from microstd.codec._limits import Limits
from microstd.errors import DecodeError

Loads = Callable[..., object]


def _rust(loads: Loads) -> Loads:
    def call(data: bytes, limits: Limits) -> object:
        return loads(data, **limits.keywords())

    return call


def _pure(loads: Loads) -> Loads:
    def call(data: bytes, limits: Limits) -> object:
        return loads(data, limits=limits)

    return call


IMPLS: dict[str, Loads] = {
    "msgpack-rust": _rust(_core.msgpack_loads),
    "msgpack-python": _pure(_pure_msgpack.loads),
    "cbor-rust": _rust(_core.cbor_loads),
    "cbor-python": _pure(_pure_cbor.loads),
}
DUMPS = {"msgpack": codec.msgpack.dumps, "cbor": codec.cbor.dumps}


def outcome(name: str, data: bytes, limits: Limits) -> object:
    try:
        return ("ok", IMPLS[name](data, limits))
    except DecodeError as err:
        return ("error", err.message, err.offset)


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_each_limit(name: str) -> None:
    dumps = DUMPS[name.split("-")[0]]

    def refused(value: object, limits: Limits) -> str:
        result = outcome(name, dumps(value), limits)
        assert result[0] == "error", result
        return str(result[1])

    assert refused([1, 2, 3], Limits(max_container_len=2)) == (
        "array of 3 items is longer than max_container_len (2)"
    )
    assert "map of 3 items" in refused({"a": 1, "b": 2, "c": 3}, Limits(max_container_len=2))
    assert (
        refused(["abcd"], Limits(max_str_len=3)) == "str of 4 bytes is longer than max_str_len (3)"
    )
    assert refused({"abcd": 1}, Limits(max_str_len=3)).startswith("str of 4 bytes")
    assert refused(b"abcd", Limits(max_str_len=3)).startswith("bytes of 4 bytes")
    assert refused([[[1]]], Limits(max_depth=2)) == "nesting deeper than 2 levels"
    assert "float is not a str or int" in refused({1.5: 1}, Limits(strict_keys=True))
    assert "tuple is not a str or int" in refused({(1, 2): 1}, Limits(strict_keys=True))
    ok = {"a": [1, 2], 3: "xyz"}
    assert outcome(name, dumps(ok), Limits(2, 3, 2, True, True)) == ("ok", ok)


def _duplicate_key(fmt: str) -> bytes:
    if fmt == "msgpack":
        return b"\x82\xa1a\x01\xa1a\x02"  # {"a": 1, "a": 2}
    return b"\xa2\x61a\x01\x61a\x02"


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_unique_keys(name: str) -> None:
    data = _duplicate_key(name.split("-")[0])
    assert outcome(name, data, Limits()) == ("ok", {"a": 2})
    assert outcome(name, data, Limits(unique_keys=True)) == (
        "error",
        "duplicate map key 'a' (unique_keys)",
        4,  # the second key, in both formats
    )


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_rust_and_twin_agree_under_random_limits(fmt: str) -> None:
    rng = random.Random(3)

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 4 or roll < 0.4:
            return rng.choice([1, -7, 2.5, "ab", "long text here", b"xyz", None, True])
        if roll < 0.7:
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        return {
            rng.choice(["k", "key", 1, 2.5, (1, 2)]): value(depth + 1)
            for _ in range(rng.randrange(4))
        }

    for _ in range(1500):
        data = DUMPS[fmt](value(0))
        limits = Limits(
            max_container_len=rng.choice([None, 0, 1, 3]),
            max_str_len=rng.choice([None, 0, 2, 5]),
            max_depth=rng.choice([None, 1, 2, 3]),
            strict_keys=rng.random() < 0.3,
            unique_keys=rng.random() < 0.3,
        )
        rust, pure = outcome(f"{fmt}-rust", data, limits), outcome(f"{fmt}-python", data, limits)
        assert rust == pure, (data, limits)


def test_limits_through_the_format_modules_and_streams() -> None:
    data = codec.msgpack.dumps([1, 2, 3])
    with pytest.raises(DecodeError, match="max_container_len"):
        codec.msgpack.loads(data, max_container_len=2)
    with pytest.raises(DecodeError, match="max_container_len"):
        codec.msgpack.loads(data, type=list[int], max_container_len=2)
    with pytest.raises(DecodeError, match="max_str_len"):
        codec.cbor.loads(codec.cbor.dumps("abc"), max_str_len=2)
    decoder = codec.msgpack.StreamDecoder(max_depth=1)
    decoder.feed(codec.msgpack.dumps([1]) + codec.msgpack.dumps([[1]]))
    assert next(decoder) == [1]
    with pytest.raises(DecodeError, match="nesting deeper than 1 levels"):
        next(decoder)
    with pytest.raises(DecodeError, match="unique_keys"):
        list(codec.cbor.iter_loads(_duplicate_key("cbor"), unique_keys=True))
    with pytest.raises(ValueError, match="non-negative"):
        codec.msgpack.loads(data, max_str_len=-1)
