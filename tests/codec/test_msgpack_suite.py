"""The whole msgpack-test-suite (vendored data, tests/codec/data/) decodes, on
the Rust codec and the pure twin, and the canonical forms re-encode to the
same bytes; timestamps a datetime cannot hold come back as `codec.Timestamp`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microstd import _core
from microstd.codec import Ext, Timestamp, _pure_msgpack
from microstd.errors import EncodeError

SUITE = json.loads(
    (Path(__file__).parent / "data" / "msgpack-test-suite" / "msgpack-test-suite.json").read_text()
)
CASES = [
    (f"{group}[{i}]", entry) for group, entries in SUITE.items() for i, entry in enumerate(entries)
]
LOADS: dict[str, Callable[[bytes], object]] = {
    "rust": _core.msgpack_loads,
    "python": _pure_msgpack.loads,
}
DUMPS: dict[str, Callable[[object], bytes]] = {
    "rust": _core.msgpack_dumps,
    "python": _pure_msgpack.dumps,
}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def expected(entry: dict[str, Any]) -> object:
    if "nil" in entry:
        return None
    for key in ("bool", "string", "array", "map"):
        if key in entry:
            return entry[key]
    if "binary" in entry:
        return bytes.fromhex(entry["binary"].replace("-", ""))
    if "bignum" in entry:
        return int(entry["bignum"])
    if "number" in entry:
        return entry["number"]
    if "ext" in entry:
        code, data = entry["ext"]
        return Ext(code, bytes.fromhex(data.replace("-", "")))
    seconds, nanos = entry["timestamp"]
    if nanos % 1000 == 0 and -62_135_596_800 <= seconds < 253_402_300_800:
        return EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
    return Timestamp(seconds, nanos)


@pytest.mark.parametrize("impl", ["rust", "python"])
@pytest.mark.parametrize(("name", "entry"), CASES, ids=[c[0] for c in CASES])
def test_every_encoding_decodes(impl: str, name: str, entry: dict[str, Any]) -> None:
    want = expected(entry)
    for hexed in entry["msgpack"]:
        got = LOADS[impl](bytes.fromhex(hexed.replace("-", "")))
        assert got == want, (hexed, got)
        assert type(got) is type(want) or isinstance(want, (int, float)), (hexed, got)


TIMESTAMPS = [(e["timestamp"], e["msgpack"][0]) for e in SUITE["50.timestamp.yaml"]]


@pytest.mark.parametrize("impl", ["rust", "python"])
@pytest.mark.parametrize(("stamp", "hexed"), TIMESTAMPS, ids=[h for _, h in TIMESTAMPS])
def test_timestamps_round_trip_to_the_same_bytes(impl: str, stamp: list[int], hexed: str) -> None:
    data = bytes.fromhex(hexed.replace("-", ""))
    value = LOADS[impl](data)
    assert DUMPS[impl](value) == data
    assert DUMPS[impl](Timestamp(*stamp)) == data
    if isinstance(value, Timestamp):
        # Only what a datetime cannot hold exactly.
        assert stamp[1] % 1000 or not -62_135_596_800 <= stamp[0] < 253_402_300_800


def test_timestamp_type() -> None:
    ts = Timestamp(1, 5)
    assert (ts.seconds, ts.nanoseconds) == (1, 5)
    assert ts == Timestamp(1, 5)
    assert hash(ts) == hash(Timestamp(1, 5))
    assert repr(ts) == "Timestamp(seconds=1, nanoseconds=5)"
    with pytest.raises(ValueError, match="nanoseconds"):
        Timestamp(0, 10**9)
    with pytest.raises(ValueError, match="64 bits"):
        Timestamp(2**63)
    with pytest.raises(TypeError):
        Timestamp(1.5)  # type: ignore[arg-type]
    at = dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=dt.timezone.utc)
    assert Timestamp.from_datetime(at).to_datetime() == at
    with pytest.raises(ValueError, match="nanoseconds"):
        Timestamp(0, 1).to_datetime()
    with pytest.raises(ValueError, match="years"):
        Timestamp(-62_167_219_200).to_datetime()


@pytest.mark.parametrize("impl", ["rust", "python"])
def test_timestamps_in_cbor_and_json(impl: str) -> None:
    from microstd import _core
    from microstd.codec import _pure_cbor, json

    dumps, loads = (
        (_core.cbor_dumps, _core.cbor_loads)
        if impl == "rust"
        else (_pure_cbor.dumps, _pure_cbor.loads)
    )
    year_zero = Timestamp(-62_167_219_200)
    data = dumps(year_zero)
    assert data == b"\xc1\x3b\x00\x00\x00\x0e\x79\x74\x7b\xff"  # tag 1, the int
    assert loads(data) == year_zero
    assert loads(dumps([Timestamp(1, 500_000_000)])) == [
        dt.datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=dt.timezone.utc)
    ]
    encode = json.dumps if impl == "rust" else json.pure_dumps
    assert encode(Timestamp(1, 5)) == b'"1970-01-01T00:00:01.000000005+00:00"'
    with pytest.raises(EncodeError, match="outside years"):
        encode(year_zero)
