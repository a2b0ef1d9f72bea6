"""Fuzz the JSON decoders: orjson (`json.loads`) and the stdlib twin
(`json.pure_loads`) must agree on every input: the same value, or a
DecodeError from both (numbers too large for a double and lone surrogates
included). Inputs are bytes, so invalid UTF-8 is exercised too.

Run: python fuzz/fuzz_json.py -atheris_runs=20000 -max_len=4096
"""

from __future__ import annotations

import math
import sys

import atheris

with atheris.instrument_imports():
    from microstd.codec import json
    from microstd.errors import DecodeError


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_one_input(data: bytes) -> None:
    results = []
    for loads in (json.loads, json.pure_loads):
        try:
            results.append(("value", loads(data)))
        except DecodeError as exc:
            if not 0 <= exc.offset <= len(data):
                raise AssertionError(f"offset {exc.offset} outside the input") from exc
            results.append(("error", None))
    (kind_a, a), (kind_b, b) = results
    if kind_a != kind_b or not _same(a, b):
        raise AssertionError(f"orjson gave {kind_a} {a!r}, the twin {kind_b} {b!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
