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

__all__ = ["FORMATS", "PAYLOAD_TITLES", "cases", "impls", "payloads"]

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


#: What each payload is, as the report names it.
PAYLOAD_TITLES = {
    "small": "small RPC message (7 keys)",
    "api_2k": "~2 KB API response",
    "records_200k": "~200 KB list of records",
    "floats": "5,000 floats",
    "non_ascii": "non-ASCII text document",
}

#: How the report shows each format's microstd path and its twin. JSON's
#: default path is orjson with the type model's hooks, not Rust.
_CORE_LABELS = {
    "msgpack": "microstd (Rust core)",
    "cbor": "microstd (Rust core)",
    "json": "microstd (orjson + hooks)",
}
_TWIN_LABELS = {
    "msgpack": "twin (msgpack package + hooks)",
    "cbor": "twin (pure Python)",
    "json": "twin (stdlib json + hooks)",
}
_FORMAT_TITLES = {"msgpack": "msgpack", "cbor": "CBOR", "json": "JSON"}


def _labelled(fmt: str, table: dict[str, tuple[Encoder, Decoder]]) -> dict[str, tuple[str, str]]:
    """(label, role) per implementation to report; without the Rust core
    (`MICROSTD_PURE=1`, no extension) the msgpack and CBOR default path *is*
    the twin, so it is not reported a second time."""
    from microstd import _accel

    out: dict[str, tuple[str, str]] = {}
    for impl in table:
        if impl == "rust":
            if fmt != "json" and not _accel.AVAILABLE:
                continue
            out[impl] = (_CORE_LABELS[fmt], "core")
        elif impl == "python":
            out[impl] = (_TWIN_LABELS[fmt], "twin")
        else:
            out[impl] = (impl, "peer")
    return out


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
    from microstd.bench.codec_typed import corpus_cases, typed_cases

    return out + corpus_cases(quick) + typed_cases(quick)


def _format_cases(
    fmt: str,
    name: str,
    value: object,
    encoded: bytes,
    table: dict[str, tuple[Encoder, Decoder]],
) -> list[Case]:
    reference = _reference(fmt)
    labels = _labelled(fmt, table)
    out: list[Case] = []
    for op in ("encode", "decode"):
        title = f"{_FORMAT_TITLES[fmt]} {op}, {PAYLOAD_TITLES[name]}"
        for impl, (label, role) in labels.items():
            encode, decode = table[impl]
            if op == "encode":
                fn = _bind(encode, value)
                check = _encodes(reference, value)
            else:
                fn = _bind(decode, encoded)
                check = _decodes(reference, encoded)
            out.append(
                Case(
                    "codec",
                    title,
                    f"{fmt} {op} {name}",
                    impl,
                    fn,
                    baseline=impl == "python",
                    check=check,
                    label=label,
                    role=role,
                )
            )
    return out


def _bind(fn: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: fn(arg)


def _encodes(reference: Decoder, value: object) -> Callable[[object], bool]:
    return lambda result: isinstance(result, bytes) and reference(result) == value


def _decodes(reference: Decoder, encoded: bytes) -> Callable[[object], bool]:
    return lambda result: result == reference(encoded)
