"""Shared helpers of the key-value sources (etcd, NATS KV, Consul, Redis hashes)."""

from __future__ import annotations

from typing import Any

from microstd.config.sources._formats import parse_document
from microstd.config.sources.base import nest

__all__ = ["decode_value", "kv_tree"]

# Remote values beyond this size are refused rather than held in memory.
MAX_VALUE_BYTES = 4 * 1024 * 1024


def decode_value(raw: bytes, where: str) -> str:
    """A stored value as text; `ValueError` when it is not UTF-8 or too large."""
    if len(raw) > MAX_VALUE_BYTES:
        raise ValueError(f"{where}: value larger than {MAX_VALUE_BYTES} bytes")
    return raw.decode("utf-8")


def kv_tree(
    pairs: dict[str, str], prefix: str, sep: str, where: str, document: str | None = None
) -> dict[str, Any]:
    """Keys under `prefix` nested on `sep`; with `document`, one key holding a whole document."""
    if document is not None:
        text = pairs.get(prefix)
        return parse_document(text, document, where) if text is not None else {}
    flat = {}
    for key, value in pairs.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :].strip(sep)
        if rest:
            flat[rest] = value
    return nest(flat, sep, where)
