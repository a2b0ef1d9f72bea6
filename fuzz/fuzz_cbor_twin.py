"""Fuzz the two CBOR decoders against each other: the Rust codec and the cbor2
twin must both decode an input or both refuse it with a DecodeError (the caps
on tags 4 and 5, the depth limit and the length checks included).

Run: python fuzz/fuzz_cbor_twin.py -atheris_runs=20000 -max_len=256
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from microstd import _core
    from microstd.codec import _pure_cbor
    from microstd.errors import DecodeError


def _outcome(loads: object, data: bytes) -> str:
    try:
        loads(data)  # type: ignore[operator]
    except DecodeError:
        return "DecodeError"
    return "value"


def test_one_input(data: bytes) -> None:
    rust = _outcome(_core.cbor_loads, data)
    twin = _outcome(_pure_cbor.loads, data)
    if rust != twin:
        raise AssertionError(f"{data.hex()}: the Rust codec gave {rust}, the twin {twin}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
