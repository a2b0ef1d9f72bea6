"""Seeded benchmark payloads for the codecs: the same values on every run.

The generator lives in `microstd.bench.codec` so `microstd bench codec`
(installed, without this folder) uses exactly the same payloads.
"""

from __future__ import annotations

from microstd.bench.codec import payloads

__all__ = ["PAYLOADS", "payloads"]

PAYLOADS = payloads()
