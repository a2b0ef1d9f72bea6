"""Values a codec carries without understanding them.

`Ext` is a msgpack extension type the decoder does not know; `Tag` is a CBOR
tag it does not know. Both decode to these objects and encode back to the
same bytes, so a service can pass foreign data through untouched.
"""

from __future__ import annotations

__all__ = ["Ext", "Tag"]


class Ext:
    """A msgpack extension value: a type code in -128..127 and its raw bytes."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        if not isinstance(code, int) or not -128 <= code <= 127:
            raise ValueError(f"Ext code must be an int in -128..127, got {code!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"Ext data must be bytes, got {type(data).__name__}")
        self.code = code
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ext):
            return NotImplemented
        return self.code == other.code and self.data == other.data

    def __hash__(self) -> int:
        return hash((Ext, self.code, self.data))

    def __repr__(self) -> str:
        return f"Ext(code={self.code}, data={self.data!r})"


class Tag:
    """A CBOR tagged value: a tag number (unsigned 64-bit) and the tagged item."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: int, value: object) -> None:
        if not isinstance(tag, int) or not 0 <= tag < 2**64:
            raise ValueError(f"Tag number must be an int in 0..2**64-1, got {tag!r}")
        self.tag = tag
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tag):
            return NotImplemented
        return self.tag == other.tag and self.value == other.value

    def __hash__(self) -> int:
        return hash((Tag, self.tag, self.value))

    def __repr__(self) -> str:
        return f"Tag(tag={self.tag}, value={self.value!r})"
