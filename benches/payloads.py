"""Seeded benchmark payloads for the codecs: the same bytes on every run.

`PAYLOADS` maps a name to a plain-data value (what every peer package can
encode): a small RPC message, a ~2 KB API response, a ~200 KB list of
records, a float-heavy array and a non-ASCII string-heavy document.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["PAYLOADS", "payloads"]

_WORDS = ["alpha", "beta", "gamma", "delta", "order", "item", "price", "user", "status", "note"]
_NON_ASCII = ["café", "naïve", "Straße", "東京", "Привет", "مرحبا", "γειά", "😀 ok", "señor", "日本語"]


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
    """Build the payloads from `seed`."""
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
    api = {
        "status": "ok",
        "page": 1,
        "total": 1234,
        "items": [_record(rng, i) for i in range(10)],
    }
    records = [_record(rng, i) for i in range(1000)]
    floats = [rng.uniform(-1e6, 1e6) for _ in range(5000)]
    text = {
        f"k{i}": " ".join(rng.choice(_NON_ASCII) for _ in range(12)) for i in range(300)
    }
    return {
        "small": small,
        "api_2k": api,
        "records_200k": records,
        "floats": floats,
        "non_ascii": text,
    }


PAYLOADS = payloads()
