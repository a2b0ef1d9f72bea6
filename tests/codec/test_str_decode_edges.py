"""Decoded strs at the edges of the Rust core's fast paths: ASCII runs that
cross 8 and 16 byte boundaries (eight are widened at once), runs of
three-byte characters (read a word at a time) that end at every distance
from the end of the string, every UTF-8 width mixed, and invalid UTF-8 at
every position near them. Each decoder must give what Python's own UTF-8
decoder gives, or refuse what it refuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from microstd import codec
from microstd.errors import DecodeError

# One character of each width: 1, 2 (Latin-1 and beyond), 3, 4 bytes.
WIDE = ["é", "Ā", "東", "😀"]


def _texts() -> list[str]:
    out = []
    for wide in WIDE:
        for run in range(20):
            ascii_run = "abcdefghijklmnopqrstuvwxyz"[:run]
            out.append(ascii_run + wide)
            out.append(wide + ascii_run)
            out.append(wide + ascii_run + wide + ascii_run[::-1])
        for count in range(1, 8):
            out.append(wide * count)
            out.append("x" + wide * count)
            out.append(wide * count + "yz")
    # Japanese runs mixed with ASCII words and the other widths.
    out.append("東京タワー to 大阪 ok: https://t.co/abc 😀 café Ā end")
    out.append("日本語" * 9 + "a" * 17 + "語" + "é" * 3)
    # Long enough for the per-lane character counts to be summed on the way.
    out.extend(["東" * 3000 + "a" * 10, "é" * 5000, "a😀" * 3000 + "東"])
    return out


TEXTS = _texts()


@dataclasses.dataclass
class Holder:
    text: str
    more: list[str]


def _decoders() -> dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]]:
    out: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {}
    for name in ("json", "msgpack", "cbor"):
        mod = getattr(codec, name)
        out[f"{name} untyped"] = (mod.dumps, mod.loads)
        out[f"{name} str"] = (mod.dumps, mod.Decoder(str).decode)
        out[f"{name} dataclass"] = (mod.dumps, mod.Decoder(Holder).decode)
    return out


DECODERS = _decoders()


def _doc(name: str, text: str) -> Any:
    if name.endswith("str"):
        return text
    if name.endswith("dataclass"):
        return Holder(text, [text, text + "!"])
    return {text: [text, {"k": text}]}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_every_width_and_run_length_decodes_as_python_does(name: str) -> None:
    dumps, loads = DECODERS[name]
    for text in TEXTS:
        assert text.encode().decode() == text  # Python's own decoder agrees
        doc = _doc(name, text)
        assert loads(dumps(doc)) == doc, text


BAD_BYTES = (b"\x80", b"\xe6\x9d", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff")


def _bad_variants() -> list[bytes]:
    """Valid text with one byte made invalid: a stray continuation, a cut
    sequence, an overlong, a surrogate, past U+10FFFF, 0xFF."""
    out = []
    base = "abcdefgh東京ijklmnop😀qrsé".encode()
    for at in range(len(base) + 1):
        for bad in BAD_BYTES:
            out.append(base[:at] + bad + base[at:])
    return out


BAD = _bad_variants()


def _raw_string(name: str, raw: bytes) -> bytes:
    """A document holding the raw bytes as its string (no encoder would write them)."""
    fmt = name.split()[0]
    if fmt == "json":
        body = b'"' + raw + b'"'
        if name.endswith("dataclass"):
            return b'{"text":' + body + b',"more":[' + body + b"]}"
        return body if name.endswith("str") else b"[" + body + b"]"
    n = len(raw)
    assert n < 256
    head = (b"\xd9" if fmt == "msgpack" else b"\x78") + bytes([n])
    body = head + raw
    if name.endswith("dataclass"):
        key = (b"\xa4" if fmt == "msgpack" else b"\x64") + b"text"
        return (b"\x81" if fmt == "msgpack" else b"\xa1") + key + body
    return body if name.endswith("str") else (b"\x91" if fmt == "msgpack" else b"\x81") + body


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_invalid_utf8_anywhere_near_a_run_is_refused(name: str) -> None:
    _, loads = DECODERS[name]
    for raw in BAD:
        with pytest.raises(UnicodeDecodeError):
            raw.decode()
        with pytest.raises(DecodeError):
            loads(_raw_string(name, raw))


def test_json_escapes_and_lone_surrogates_beside_runs() -> None:
    loads = codec.json.loads
    typed = codec.json.Decoder(str).decode
    for run in range(18):
        ascii_run = "a" * run
        for escape, want in (
            (rb"\n", "\n"),
            (rb"\u6771", "東"),
            (rb"\ud83d\ude00", "😀"),
            (rb"\"", '"'),
        ):
            data = b'"' + ascii_run.encode() + escape + "東京".encode() + ascii_run.encode() + b'"'
            expected = ascii_run + want + "東京" + ascii_run
            assert loads(data) == expected
            assert typed(data) == expected
        lone = b'"' + ascii_run.encode() + rb"\ud83d" + "東".encode() + b'"'
        with pytest.raises(DecodeError):
            loads(lone)
        with pytest.raises(DecodeError):
            typed(lone)
