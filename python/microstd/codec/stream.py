"""Incremental decoding: `feed(bytes)`, then iterate the whole objects so far.

    decoder = codec.msgpack.StreamDecoder()
    decoder.feed(chunk)            # any split: half an object waits for the next feed
    for obj in decoder: ...

msgpack streams are objects back to back; CBOR sequences (RFC 8742) are data
items back to back; JSON streams are newline-delimited (NDJSON), one
document per line. `iter_loads(buffer)` decodes a complete buffer of them.
Each format module builds these with its own `next` function (the Rust
core's `msgpack_next` / `cbor_next`, or the pure twins').
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from microstd.errors import DecodeError

__all__ = ["DEFAULT_MAX_BUFFER", "StreamDecoder", "iter_objects"]

T = TypeVar("T")

#: The largest incomplete object a stream decoder waits for, in bytes.
DEFAULT_MAX_BUFFER = 64 * 1024 * 1024

# next(data, start) -> (object, end), or None when data ends inside the object.
Next = Callable[[bytes, int], "tuple[Any, int] | None"]


class StreamDecoder(Generic[T]):
    """Decodes a stream of objects fed in pieces of any size.

    `feed(data)` adds bytes; iterating yields every whole object received so
    far, converted to `type` when the decoder was made with one; the tail of
    an incomplete object waits for the next `feed`. An incomplete object
    larger than `max_buffer_size` bytes raises `DecodeError` rather than
    buffering without bound.
    """

    __slots__ = ("_buffer", "_convert", "_max", "_next", "_pos")

    def __init__(
        self,
        next_object: Next,
        *,
        convert: Callable[[Any], T] | None = None,
        max_buffer_size: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if max_buffer_size <= 0:
            raise ValueError("max_buffer_size must be positive")
        self._next = next_object
        self._convert = convert
        self._max = max_buffer_size
        self._buffer = b""
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes to the stream."""
        chunk = bytes(data)
        if self._pos:
            self._buffer = self._buffer[self._pos :] + chunk
            self._pos = 0
        else:
            self._buffer += chunk

    @property
    def pending(self) -> int:
        """How many bytes are buffered (the start of an incomplete object)."""
        return len(self._buffer) - self._pos

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        found = self._next(self._buffer, self._pos)
        if found is None:
            if self.pending > self._max:
                raise DecodeError(
                    f"an incomplete object is larger than max_buffer_size ({self._max} bytes)",
                    self._pos,
                )
            raise StopIteration
        value, self._pos = found
        return value if self._convert is None else self._convert(value)


def iter_objects(
    next_object: Next, buffer: bytes | bytearray | memoryview, convert: Callable[[Any], T] | None
) -> Iterator[T]:
    """Every object of a complete buffer of concatenated objects, in order."""
    data = bytes(buffer)
    pos = 0
    while pos < len(data):
        found = next_object(data, pos)
        if found is None:
            raise DecodeError("truncated input: the last object is incomplete", pos)
        value, pos = found
        yield value if convert is None else convert(value)


def ndjson_next(loads: Callable[[bytes], Any]) -> Next:
    """`next` for newline-delimited JSON: one document per line, blank lines skipped."""

    def next_line(data: bytes, start: int) -> tuple[Any, int] | None:
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                return None
            line = data[start:end]
            if line.strip():
                try:
                    return loads(line), end + 1
                except DecodeError as exc:
                    raise DecodeError(exc.message, exc.offset + start) from None
            start = end + 1

    return next_line


def ndjson_iter(
    loads: Callable[[bytes], Any], buffer: bytes | bytearray | memoryview, convert: Any
) -> Iterator[Any]:
    """Every line of an NDJSON buffer (the last line needs no newline)."""
    data = bytes(buffer)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return iter_objects(ndjson_next(loads), data, convert)
