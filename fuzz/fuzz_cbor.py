"""Fuzz the CBOR decoder: any input gives a value or a DecodeError, and what
decodes re-encodes to bytes that decode again (exact stability is not
required: a far-future epoch float may move by a microsecond).

Run: python fuzz/fuzz_cbor.py -atheris_runs=20000 -max_len=4096
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from microstd.codec import cbor
    from microstd.errors import DecodeError, EncodeError


def test_one_input(data: bytes) -> None:
    try:
        value = cbor.loads(data)
    except DecodeError as exc:
        if not 0 <= exc.offset <= len(data):
            raise AssertionError(f"offset {exc.offset} outside the input") from exc
        return
    try:
        encoded = cbor.dumps(value)
    except EncodeError as exc:
        raise AssertionError(f"decoded {value!r} but cannot encode it") from exc
    canonical = cbor.dumps(value, canonical=True)
    cbor.loads(encoded)
    cbor.loads(canonical)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
