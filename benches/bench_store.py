"""Store benchmarks: the Rust memory:// store vs its pure twin, on the sync surface.

    pytest benches/bench_store.py --benchmark-group-by=group

Groups: read / write of a small record (msgpack value, decode included),
the same with a `bytes` value (no codec: the store alone), list 100 keys by
prefix out of 100,000 (one prefix again and again, and a new prefix each
time), read_many of 100 keys (neighbours in order, and scattered ones in
random order). `test_memory_per_record`
reports bytes per small record beyond key and value in `extra_info`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from microstd import _accel
from microstd.bench.store import RAW, SMALL, memory_per_record, populated
from microstd.store import SyncStore

IMPLS = ["rust", "python"] if _accel.AVAILABLE else ["python"]
TOTAL = 100_000
PREFIX = "g0500/"
KEYS = [f"{PREFIX}{i:03}" for i in range(100)]
RAW_KEYS = [f"raw/{i:03}" for i in range(100)]
RANDOM_KEYS = [f"g{i // 100:04}/{i % 100:03}" for i in random.Random(7).sample(range(TOTAL), 100)]


@pytest.fixture(scope="module", params=IMPLS)
def big_store(request: pytest.FixtureRequest) -> tuple[str, SyncStore]:
    impl: str = request.param
    store = populated(impl, TOTAL)
    store.write("small", SMALL)
    store.write("raw", RAW)
    store.write_many(dict.fromkeys(RAW_KEYS, RAW))
    return impl, store


def _run(
    benchmark: Callable[..., object], group: str, impl: str, fn: Callable[[], object]
) -> object:
    benchmark.group = group  # type: ignore[attr-defined]
    benchmark.extra_info["impl"] = impl  # type: ignore[attr-defined]
    return benchmark(fn)


def test_read(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    rec = _run(benchmark, "read small record", impl, lambda: store.read("small"))
    assert rec.value == SMALL  # type: ignore[attr-defined]


def test_write(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    _run(benchmark, "write small record", impl, lambda: store.write("small", SMALL))
    assert store.read("small").value == SMALL


def test_read_bytes(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    rec = _run(benchmark, "read bytes record", impl, lambda: store.read("raw"))
    assert rec.value == RAW  # type: ignore[attr-defined]


def test_write_bytes(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    _run(benchmark, "write bytes record", impl, lambda: store.write("raw", RAW))
    assert store.read("raw").value == RAW


def test_list_prefix(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    keys = _run(benchmark, "list 100 of 100k by prefix", impl, lambda: store.list(PREFIX))
    assert keys == KEYS


def test_list_varied_prefix(
    benchmark: Callable[..., object], big_store: tuple[str, SyncStore]
) -> None:
    impl, store = big_store
    prefixes = itertools.cycle(f"g{g:04}/" for g in range(TOTAL // 100))
    keys = _run(benchmark, "list 100 of 100k, new prefix", impl, lambda: store.list(next(prefixes)))
    assert len(keys) == 100  # type: ignore[arg-type]


def test_read_many_random(
    benchmark: Callable[..., object], big_store: tuple[str, SyncStore]
) -> None:
    impl, store = big_store
    got = _run(benchmark, "read_many 100 random keys", impl, lambda: store.read_many(RANDOM_KEYS))
    assert list(got) == RANDOM_KEYS  # type: ignore[call-overload]


def test_read_many(benchmark: Callable[..., object], big_store: tuple[str, SyncStore]) -> None:
    impl, store = big_store
    got = _run(benchmark, "read_many 100 keys", impl, lambda: store.read_many(KEYS))
    assert list(got) == KEYS  # type: ignore[call-overload]


def test_read_many_bytes(
    benchmark: Callable[..., object], big_store: tuple[str, SyncStore]
) -> None:
    impl, store = big_store
    got = _run(benchmark, "read_many 100 bytes records", impl, lambda: store.read_many(RAW_KEYS))
    assert list(got) == RAW_KEYS  # type: ignore[call-overload]


@pytest.mark.parametrize("shuffled", [False, True], ids=["sorted", "shuffled"])
@pytest.mark.parametrize("impl", IMPLS)
def test_memory_per_record(benchmark: Callable[..., object], impl: str, shuffled: bool) -> None:
    result = memory_per_record(impl, shuffled=shuffled)
    benchmark.extra_info.update(result)  # type: ignore[attr-defined]
    benchmark.group = "memory per record"  # type: ignore[attr-defined]
    print(f"\n{impl} {'shuffled' if shuffled else 'sorted'}: {result}")
    assert result["records"] == 100_000
    assert result["bytes_per_record"] > 0
    benchmark(lambda: None)
