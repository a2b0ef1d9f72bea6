"""CBOR simple values that have no Python counterpart.

`false`, `true`, `null` and `undefined` decode to `False`, `True` and `None`
(`undefined` too); every other simple value (0..19, 32..255) decodes to a
`Simple` and encodes back to the same bytes.
"""

from __future__ import annotations

__all__ = ["Simple"]


class Simple:
    """An unassigned CBOR simple value: an int in 0..19 or 32..255."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        if not isinstance(value, int) or not (0 <= value <= 19 or 32 <= value <= 255):
            raise ValueError(f"Simple value must be an int in 0..19 or 32..255, got {value!r}")
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Simple):
            return NotImplemented
        return self.value == other.value

    def __hash__(self) -> int:
        return hash((Simple, self.value))

    def __repr__(self) -> str:
        return f"Simple({self.value})"
