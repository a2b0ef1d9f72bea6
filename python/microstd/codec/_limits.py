"""Per-call limits on untrusted input, for the pure twins (the Rust core has
the same checks and messages in `rust/src/codec/limits.rs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "Limits"]

#: Must equal the Rust core's crate::codec::MAX_DEPTH.
MAX_DEPTH = 256


@dataclass(frozen=True)
class Limits:
    """What one decode accepts; None (or False) means the format's own bound."""

    max_container_len: int | None = None
    max_str_len: int | None = None
    max_depth: int | None = None
    strict_keys: bool = False
    unique_keys: bool = False

    def __post_init__(self) -> None:
        for name in ("max_container_len", "max_str_len", "max_depth"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")

    @property
    def given(self) -> bool:
        return self != _NONE

    @property
    def depth_limit(self) -> int:
        return MAX_DEPTH if self.max_depth is None else min(self.max_depth, MAX_DEPTH)

    def keywords(self) -> dict[str, Any]:
        """The limits that are set, as keyword arguments for the Rust core."""
        out: dict[str, Any] = {}
        for name in ("max_container_len", "max_str_len", "max_depth"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.strict_keys:
            out["strict_keys"] = True
        if self.unique_keys:
            out["unique_keys"] = True
        return out

    def container(self, what: str, n: int) -> str | None:
        limit = self.max_container_len
        if limit is not None and n > limit:
            return f"{what} of {n} items is longer than max_container_len ({limit})"
        return None

    def string(self, what: str, n: int) -> str | None:
        limit = self.max_str_len
        if limit is not None and n > limit:
            return f"{what} of {n} bytes is longer than max_str_len ({limit})"
        return None

    def depth(self, depth: int) -> str | None:
        limit = self.depth_limit
        return f"nesting deeper than {limit} levels" if depth >= limit else None


_NONE = Limits()


def type_name(obj: object) -> str:
    """The Rust core's name for a type in messages (`float`, `datetime.datetime`)."""
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
