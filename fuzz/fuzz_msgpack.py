"""Fuzz the msgpack decoder: any input must decode or raise DecodeError.

Run: python fuzz/fuzz_msgpack.py -atheris_runs=20000 -max_len=4096
Whatever decodes must also re-encode and decode to an equal value (NaN aside).
"""

from __future__ import annotations

import math
import sys

import atheris

with atheris.instrument_imports():
    from microstd import _core
    from microstd.errors import DecodeError


def _has_nan(value: object) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(k) or _has_nan(v) for k, v in value.items())
    return False


def test_one_input(data: bytes) -> None:
    try:
        value = _core.msgpack_loads(data)
    except DecodeError:
        return
    # Decoded values are always encodable: an EncodeError here is a bug, so it propagates.
    again = _core.msgpack_dumps(value)
    if not _has_nan(value):
        assert _core.msgpack_loads(again) == value


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
