"""`microstd.bench.codec_typed.decoders`: every implementation it returns for a
format decodes the benchmark's bytes to the same value."""

from __future__ import annotations

import dataclasses

import pytest

from microstd import codec
from microstd.bench.codec_typed import TYPES, corpus, decoders


@pytest.mark.parametrize("fmt", ["msgpack", "json", "cbor"])
def test_every_decoder_of_a_format_gives_the_same_value(fmt: str) -> None:
    data = getattr(codec, fmt).dumps(corpus("small"))
    found = decoders(fmt, TYPES["small"])
    assert {"rust", "python"} <= set(found)
    values = {name: decode(data) for name, decode in found.items()}
    expected = values.pop("rust")
    for name, value in values.items():
        assert dataclasses.asdict(value) == dataclasses.asdict(expected), name
