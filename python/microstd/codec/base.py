"""The codec interface: a content type and a pair of functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Codec"]


@dataclass(frozen=True)
class Codec:
    """Encodes Python objects to bytes and back for one content type.

    `aliases` are further content types the codec answers to
    (`application/x-msgpack` for msgpack). `impl` says which implementation
    this is: `"rust"` for the core, `"python"` for the pure baseline.
    """

    content_type: str
    encode: Callable[[object], bytes] = field(repr=False)
    decode: Callable[[bytes], object] = field(repr=False)
    aliases: tuple[str, ...] = ()
    impl: str = "python"

    def __post_init__(self) -> None:
        # dumps/loads run on every message: unless a subclass overrides them,
        # they become the encode/decode functions themselves (instance
        # attributes shadow the methods below), so a call through a codec
        # costs no extra Python frame. Measured: a third of the time of a
        # small message's encode through the Rust core.
        cls = type(self)
        if cls.dumps is Codec.dumps:
            object.__setattr__(self, "dumps", self.encode)
        if cls.loads is Codec.loads:
            object.__setattr__(self, "loads", self.decode)

    def dumps(self, obj: object) -> bytes:
        """Encode `obj`; raises `EncodeError` for what the codec cannot carry."""
        return self.encode(obj)

    def loads(self, data: bytes) -> object:
        """Decode `data`; raises `DecodeError` with the byte offset on bad input."""
        return self.decode(data)

    @property
    def content_types(self) -> tuple[str, ...]:
        return (self.content_type, *self.aliases)
