"""JSON's literals (`true`, `false`, `null`) read by the typed one-pass
reader: whole, cut short at the end of the data, misspelt, or followed by
more letters, as leaves of a dataclass, inside untyped values, and at the
top level; each answer must be what the untyped `loads` (orjson) gives."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from microstd import codec
from microstd.errors import DecodeError


@dataclasses.dataclass
class Flags:
    on: bool
    off: bool
    none: None
    any: Any


LITERALS = [b"true", b"false", b"null"]


def _variants() -> list[bytes]:
    out = []
    for word in LITERALS:
        out.append(word)
        out.extend(word[:n] for n in range(len(word)))  # cut short
        out.append(word + b"e")
        out.append(word[:-1] + b"x")
        out.append(word.upper())
    return out


def _outcome(decode: Any, data: bytes) -> object:
    try:
        return ("ok", decode(data))
    except DecodeError:
        return ("error",)


@pytest.mark.parametrize("word", _variants())
def test_literals_decode_as_the_untyped_loads_decodes_them(word: bytes) -> None:
    typed_any = codec.json.Decoder(Any).decode
    for data in (word, b"[" + word + b"]", b'{"k":' + word + b"}", b"[1," + word):
        assert _outcome(typed_any, data) == _outcome(codec.json.loads, data), data
    for typed, want in ((bool, (True, False)), (type(None), (None,))):
        decode = codec.json.Decoder(typed).decode
        got = _outcome(decode, word)
        loaded = _outcome(codec.json.loads, word)
        if loaded[0] == "ok" and loaded[1] in want and type(loaded[1]) is typed:
            assert got == loaded, word
        else:
            assert got == ("error",), word


@pytest.mark.parametrize("word", _variants())
def test_literal_fields_of_a_dataclass(word: bytes) -> None:
    decode = codec.json.Decoder(Flags).decode
    good = {b"on": b"true", b"off": b"false", b"none": b"null", b"any": b"null"}
    for field in good:
        for tail in (b"}", b""):
            parts = [b'"%s":%s' % (k, word if k == field else v) for k, v in good.items()]
            data = b"{" + b",".join(parts) + tail
            fits = {b"on": LITERALS[:2], b"off": LITERALS[:2], b"none": LITERALS[2:]}
            expected = word in fits.get(field, LITERALS) and tail == b"}"
            if expected:
                flags = decode(data)
                assert dataclasses.asdict(flags)[field.decode()] == codec.json.loads(word)
            else:
                with pytest.raises(DecodeError):
                    decode(data)
