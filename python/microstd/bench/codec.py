"""`microstd bench codec`: msgpack, CBOR and JSON, Rust vs the pure baseline vs peers.

Every case encodes or decodes one seeded payload. The pure baseline (the
`impl="python"` codec) is each group's baseline; peers (msgpack, cbor2,
ormsgpack, msgspec, orjson) are imported lazily and left out when missing.
Each case's result is checked once before timing: an encoder's output must
decode back to the payload, a decoder's output must equal it.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from typing import Any

from microstd.bench.runner import Case

__all__ = ["FORMATS", "cases", "impls", "payloads"]

_WORDS = ["alpha", "beta", "gamma", "delta", "order", "item", "price", "user", "status", "note"]
_NON_ASCII = [
    "café",
    "naïve",
    "Straße",
    "東京",
    "Привет",
    "مرحبا",
    "γειά",
    "😀 ok",
    "señor",
    "日本語",
]


def _record(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"{rng.choice(_WORDS)}-{rng.randrange(10_000)}",
        "active": rng.random() < 0.5,
        "score": round(rng.uniform(0, 100), 3),
        "tags": rng.sample(_WORDS, 3),
        "created": 1_700_000_000 + rng.randrange(10**6),
        "owner": {"user": f"u{rng.randrange(1000)}", "team": rng.choice(_WORDS)},
        "note": None,
    }


def payloads(seed: int = 20240501) -> dict[str, Any]:
    """The benchmark payloads, built from `seed` (same values on every run).

    `small`: an RPC message of 7 keys; `api_2k`: a ~2 KB API response;
    `records_200k`: ~200 KB of records; `floats`: 5000 floats;
    `non_ascii`: a document of non-ASCII strings.
    """
    rng = random.Random(seed)
    small = {
        "id": "req-7f3a",
        "method": "Orders.Create",
        "version": 2,
        "deadline": 1.5,
        "params": {"sku": "A-1", "qty": 3},
        "trace": True,
        "tags": ["web", "eu"],
    }
    api = {"status": "ok", "page": 1, "total": 1234, "items": [_record(rng, i) for i in range(14)]}
    return {
        "small": small,
        "api_2k": api,
        "records_200k": [_record(rng, i) for i in range(1700)],
        "floats": [rng.uniform(-1e6, 1e6) for _ in range(5000)],
        "non_ascii": {
            f"k{i}": " ".join(rng.choice(_NON_ASCII) for _ in range(12)) for i in range(300)
        },
    }


Encoder = Callable[[object], bytes]
Decoder = Callable[[bytes], object]
FORMATS = ("msgpack", "cbor", "json")
_CONTENT_TYPES = {
    "msgpack": "application/msgpack",
    "cbor": "application/cbor",
    "json": "application/json",
}


def _peer(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def impls(fmt: str) -> dict[str, tuple[Encoder, Decoder]]:
    """(encode, decode) per implementation of `fmt`: rust, python, then available peers."""
    from microstd import codec

    out: dict[str, tuple[Encoder, Decoder]] = {}
    for impl in ("rust", "python"):
        c = codec.get(_CONTENT_TYPES[fmt], impl=impl)
        out[impl] = (c.dumps, c.loads)
    if fmt == "msgpack":
        if (m := _peer("msgpack")) is not None:
            out["msgpack"] = (m.packb, m.unpackb)
        if (m := _peer("ormsgpack")) is not None:
            out["ormsgpack"] = (m.packb, m.unpackb)
        if (m := _peer("msgspec")) is not None:
            out["msgspec"] = (m.msgpack.encode, m.msgpack.decode)
    elif fmt == "cbor":
        if (m := _peer("cbor2")) is not None:
            out["cbor2"] = (m.dumps, m.loads)
    else:
        if (m := _peer("orjson")) is not None:
            out["orjson"] = (m.dumps, m.loads)
        if (m := _peer("msgspec")) is not None:
            out["msgspec"] = (m.json.encode, m.json.decode)
    return out


def _reference(fmt: str) -> Decoder:
    """A decoder to check encoders' output with: the Rust codec, else the baseline."""
    decoders = impls(fmt)
    return decoders["rust"][1]


def cases(quick: bool) -> list[Case]:
    """Encode and decode cases for every format, payload and implementation."""
    data = payloads()
    names = ["small", "api_2k"] if quick else list(data)
    out: list[Case] = []
    for fmt in FORMATS:
        table = impls(fmt)
        baseline_encode = table["python"][0]
        for name in names:
            value = data[name]
            try:
                encoded = baseline_encode(value)
            except Exception:  # the format's baseline cannot run: its cases report that
                encoded = b""
            out += _format_cases(fmt, name, value, encoded, table)
    return out


def _format_cases(
    fmt: str,
    name: str,
    value: object,
    encoded: bytes,
    table: dict[str, tuple[Encoder, Decoder]],
) -> list[Case]:
    reference = _reference(fmt)
    out: list[Case] = []
    for impl, (encode, _) in table.items():
        out.append(
            Case(
                "codec",
                f"{fmt} encode {name}",
                f"{fmt} encode {name}",
                impl,
                _bind(encode, value),
                baseline=impl == "python",
                check=lambda result: _decodes_to(reference, result, value),
            )
        )
    for impl, (_, decode) in table.items():
        out.append(
            Case(
                "codec",
                f"{fmt} decode {name}",
                f"{fmt} decode {name}",
                impl,
                _bind(decode, encoded),
                baseline=impl == "python",
                check=lambda result: result == reference(encoded),
            )
        )
    return out


def _bind(fn: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: fn(arg)


def _decodes_to(reference: Decoder, result: object, value: object) -> bool:
    return isinstance(result, bytes) and reference(result) == value
