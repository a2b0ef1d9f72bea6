"""Find where msgpack bytes go wrong: the message and byte offset the Rust
decoder reports, for the pure baseline's errors.

It walks the structure without building objects (except map keys, to test
that they are hashable). It runs only after the `msgpack` package has
already refused the input, so its speed does not matter.
"""

from __future__ import annotations

import struct

from microstd.codec._limits import Limits, type_name

__all__ = ["MAX_DEPTH", "locate_error", "object_end"]

MAX_DEPTH = 256

_FIXED = {
    0xCA: ("float32", 4),
    0xCB: ("float64", 8),
    0xCC: ("uint8", 1),
    0xCD: ("uint16", 2),
    0xCE: ("uint32", 4),
    0xCF: ("uint64", 8),
    0xD0: ("int8", 1),
    0xD1: ("int16", 2),
    0xD2: ("int32", 4),
    0xD3: ("int64", 8),
}


_ARRAYS = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])


def _tuples(value: object) -> object:
    """An array key as the decoder builds it: tuples all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


class _Bad(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset


class _Scanner:
    def __init__(self, data: bytes, limits: Limits | None = None) -> None:
        self.data = data
        self.pos = 0
        self.limits = limits or Limits()

    def limit(self, message: str | None, start: int) -> None:
        if message is not None:
            raise _Bad(message, start)

    def take(self, n: int, start: int, what: str) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise _Bad(f"truncated {what}: needs {n} bytes, {left} left", start)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def length(self, width: int, start: int, what: str) -> int:
        raw = self.take(width, start, what)
        return int.from_bytes(raw, "big")

    def value(self, depth: int, key: bool) -> object:
        """Skip one item; returns a hashable stand-in for keys (else None)."""
        start = self.pos
        if start >= len(self.data):
            raise _Bad("unexpected end of data", start)
        b = self.data[start]
        self.pos += 1
        if b <= 0x7F or b >= 0xE0:
            return b
        if b <= 0x8F:
            return self.map(b & 0x0F, start, depth, key)
        if b <= 0x9F:
            return self.array(b & 0x0F, start, depth, key)
        if b <= 0xBF:
            return self.text(b & 0x1F, start)
        if b == 0xC1:
            raise _Bad("reserved type byte 0xc1", start)
        if b in (0xC0, 0xC2, 0xC3):
            return b
        if 0xC4 <= b <= 0xC6:
            n = self.length(1 << (b - 0xC4), start, "bin header")
            self.limit(self.limits.string("bytes", n), start)
            return self.take(n, start, "bin")
        if 0xC7 <= b <= 0xC9:
            return self.ext(self.length(1 << (b - 0xC7), start, "ext header"), start)
        if b in _FIXED:
            what, width = _FIXED[b]
            return self.take(width, start, what)
        if 0xD4 <= b <= 0xD8:
            return self.ext(1 << (b - 0xD4), start)
        if 0xD9 <= b <= 0xDB:
            return self.text(self.length(1 << (b - 0xD9), start, "str header"), start)
        if b in (0xDC, 0xDD):
            n = self.length(2 if b == 0xDC else 4, start, "array header")
            return self.array(n, start, depth, key)
        n = self.length(2 if b == 0xDE else 4, start, "map header")
        return self.map(n, start, depth, key)

    def text(self, n: int, start: int) -> str:
        self.limit(self.limits.string("str", n), start)
        at = self.pos
        raw = self.take(n, start, "str")
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise _Bad("invalid UTF-8 in str", at + exc.start) from None

    def ext(self, n: int, start: int) -> object:
        self.limit(self.limits.string("ext", n), start)
        code = struct.unpack(">b", self.take(1, start, "ext type"))[0]
        data = self.take(n, start, "ext")
        if code == -1:
            if len(data) not in (4, 8, 12):
                raise _Bad("timestamp extension must carry 4, 8 or 12 bytes", start)
            if len(data) == 4:
                nanos = 0
            elif len(data) == 8:
                nanos = int.from_bytes(data, "big") >> 34
            else:
                nanos = int.from_bytes(data[:4], "big")
            if nanos >= 1_000_000_000:
                raise _Bad("timestamp nanoseconds out of range", start)
        return (code, data)

    def check_key(self, key_at: int, seen: set[object]) -> None:
        """`strict_keys` and `unique_keys` for the key just scanned (decoded for
        real, so the checks see the values the decoder builds)."""
        from microstd.codec._pure_msgpack import loads

        marker = self.data[key_at]
        key = loads(self.data[key_at : self.pos])
        if marker in _ARRAYS:
            key = _tuples(key)
        if self.limits.strict_keys and type(key) not in (str, int):
            name = type_name(key)
            raise _Bad(f"map key of type {name} is not a str or int (strict_keys)", key_at)
        if self.limits.unique_keys:
            if key in seen:
                raise _Bad(f"duplicate map key {key!r} (unique_keys)", key_at)
            seen.add(key)

    def enter(self, depth: int, start: int) -> None:
        self.limit(self.limits.depth(depth), start)

    def array(self, n: int, start: int, depth: int, key: bool) -> object:
        self.enter(depth, start)
        self.limit(self.limits.container("array", n), start)
        left = len(self.data) - self.pos
        if n > left:
            raise _Bad(f"array of {n} items is longer than the {left} bytes left", start)
        items = tuple(self.value(depth + 1, key) for _ in range(n))
        return items if key else None

    def map(self, n: int, start: int, depth: int, key: bool = False) -> object:
        self.enter(depth, start)
        self.limit(self.limits.container("map", n), start)
        left = len(self.data) - self.pos
        if 2 * n > left:
            raise _Bad(f"map of {n} pairs is longer than the {left} bytes left", start)
        seen: set[object] = set()
        for _ in range(n):
            key_at = self.pos
            k = self.value(depth + 1, True)
            try:
                hash(k)
            except TypeError:
                raise _Bad(f"map key of type {type(k).__name__} is not hashable", key_at) from None
            if self.limits.strict_keys or self.limits.unique_keys:
                self.check_key(key_at, seen)
            self.value(depth + 1, False)
        # A dict stand-in: unhashable, like the dict the decoder would build.
        return {} if key else None


def locate_error(data: bytes, limits: Limits | None = None) -> tuple[str | None, int]:
    """The first problem in `data` as (message, offset); (None, 0) if none is found."""
    scanner = _Scanner(data, limits)
    try:
        scanner.value(0, False)
    except _Bad as bad:
        return bad.message, bad.offset
    except RecursionError:
        return f"nesting deeper than {MAX_DEPTH} levels", 0
    if scanner.pos != len(data):
        return (
            f"trailing data after the msgpack object ({len(data) - scanner.pos} bytes)",
            scanner.pos,
        )
    return None, 0


def _incomplete(message: str) -> bool:
    """The Rust decoder's messages for input that ends inside an item."""
    return (
        message.startswith(("truncated", "unexpected end of data")) or "longer than the" in message
    )


def object_end(data: bytes, start: int, limits: Limits | None = None) -> int | None:
    """Where the object starting at `start` ends; None when `data` ends first.

    Raises `DecodeError` (offset in `data`) for bytes no more input can mend.
    """
    from microstd.errors import DecodeError

    scanner = _Scanner(data, limits)
    scanner.pos = start
    try:
        scanner.value(0, False)
    except _Bad as bad:
        if _incomplete(bad.message):
            return None
        raise DecodeError(bad.message, bad.offset) from None
    except RecursionError:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH} levels", start) from None
    return scanner.pos
