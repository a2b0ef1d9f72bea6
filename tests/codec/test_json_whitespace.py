"""Whitespace in typed JSON: the one-pass reader settles a byte above b' '
with one compare and reads whitespace only below it. Every kind of JSON
whitespace around every token must decode as the compact text does, and
other bytes at or below b' ' (control bytes) must be refused, as the
untyped `loads` refuses them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from microstd import codec
from microstd.errors import DecodeError


@dataclasses.dataclass
class Inner:
    name: str
    tags: list[str]


@dataclasses.dataclass
class Outer:
    id: int
    score: float
    ok: bool
    none: None
    maybe: int | None
    inner: Inner
    rows: list[Inner]
    extra: dict[str, Any]


VALUE = {
    "id": 12,
    "score": 1.5,
    "ok": True,
    "none": None,
    "maybe": None,
    "inner": {"name": "東京 a", "tags": ["x", "y"]},
    "rows": [{"name": "r", "tags": []}],
    "extra": {"k": [1, {"z": False}]},
}

SPACES = [" ", "\t", "\n", "\r", "\r\n", " \t\n\r "]


def _spaced(space: str) -> bytes:
    text = json.dumps(VALUE, ensure_ascii=False, separators=(",", ":"))
    out = []
    in_string = False
    for ch in text:
        if ch == '"':
            in_string = not in_string
        out.append(ch)
        if not in_string and (ch in ",:[]{}" or ch == '"'):
            out.append(space)
    return (space + "".join(out) + space).encode()


@pytest.mark.parametrize("space", SPACES)
def test_whitespace_anywhere_decodes_as_compact_text(space: str) -> None:
    decode = codec.json.Decoder(Outer).decode
    want = decode(json.dumps(VALUE, separators=(",", ":")).encode())
    assert decode(_spaced(space)) == want
    assert decode(json.dumps(VALUE, indent=2).encode()) == want


@pytest.mark.parametrize("byte", [b"\x00", b"\x0b", b"\x0c", b"\x1f", b"\x85"])
def test_other_low_bytes_between_tokens_are_refused(byte: bytes) -> None:
    decode = codec.json.Decoder(Outer).decode
    good = json.dumps(VALUE, separators=(",", ":")).encode()
    for at in (0, 1, good.index(b":") + 1, good.index(b",") + 1, len(good)):
        data = good[:at] + byte + good[at:]
        with pytest.raises(DecodeError):
            codec.json.loads(data)
        with pytest.raises(DecodeError):
            decode(data)
