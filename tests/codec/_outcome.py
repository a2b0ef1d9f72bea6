"""What a typed decode of some bytes comes to, as a comparable value: the
result, or the error's kind and its fields (the tests compare implementations
on these, errors included)."""

from __future__ import annotations

from typing import Any

from microstd.errors import DecodeError, ValidationError


def decode_outcome(decode: Any, data: bytes) -> object:
    try:
        return ("ok", decode(data))
    except ValidationError as err:
        return ("invalid", err.message, err.path, err.expected, err.found)
    except DecodeError as err:
        return ("decode", err.message, err.offset)
