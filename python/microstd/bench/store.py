"""Store benchmarks: the Rust `memory://` store against its pure twin, sync surface.

Each group does the same work on both; the pure twin is the baseline. The
stores are built once per run (a 100,000-key store takes a moment) and shared
by the cases that need them. `memory_per_record` measures what a small
record costs beyond its key and encoded value.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import random
import tracemalloc
from collections.abc import Callable, Iterator

from microstd import _accel
from microstd.bench.runner import Case
from microstd.store import SyncStore, open_sync
from microstd.store.base import Record

__all__ = ["RAW", "SMALL", "cases", "memory_per_record", "populated"]

#: A small record's value, typical of a session or a cache entry.
SMALL: dict[str, object] = {"user": "ada", "id": 1234, "active": True, "score": 9.5}
#: A small `bytes` value: stored as is, so its cases time the store alone.
RAW = b"x" * 40
_GROUPS = 1000
_PER_GROUP = 100


def _impls() -> list[str]:
    return ["rust", "python"] if _accel.AVAILABLE else ["python"]


def populated(impl: str, total: int) -> SyncStore:
    """A store holding `total` small records under `g{group:04}/{i:03}`, 100 per group."""
    store = open_sync("memory://", impl=impl)
    batch: dict[str, object] = {}
    for i in range(total):
        batch[f"g{i // _PER_GROUP:04}/{i % _PER_GROUP:03}"] = SMALL
        if len(batch) >= 5000:
            store.write_many(batch)
            batch = {}
    if batch:
        store.write_many(batch)
    return store


def _case(group: str, name: str, impl: str, fn: Callable[[], object], **kw: object) -> Case:
    # The report's title for a case is its description (`name`); `group` orders them.
    return Case("store", name, group, impl, fn, baseline=impl == "python", **kw)  # type: ignore[arg-type]


def cases(quick: bool) -> list[Case]:
    """Read, write, list-by-prefix and read_many, Rust vs the pure twin."""
    total = 10_000 if quick else _GROUPS * _PER_GROUP
    out: list[Case] = []
    for impl in _impls():
        store = populated(impl, total)
        mid = f"g{(total // _PER_GROUP) // 2:04}/"
        keys = [f"{mid}{i:03}" for i in range(_PER_GROUP)]
        store.write("small", SMALL)
        store.write("raw", RAW)
        raw_keys = [f"raw/{i:03}" for i in range(_PER_GROUP)]
        store.write_many(dict.fromkeys(raw_keys, RAW))

        def read(store: SyncStore = store) -> Record:
            return store.read("small")

        def write(store: SyncStore = store) -> object:
            return store.write("small", SMALL)

        def read_raw(store: SyncStore = store) -> Record:
            return store.read("raw")

        def write_raw(store: SyncStore = store) -> object:
            return store.write("raw", RAW)

        def read_many_raw(
            store: SyncStore = store, keys: list[str] = raw_keys
        ) -> dict[str, Record]:
            return store.read_many(keys)

        def list_prefix(store: SyncStore = store, mid: str = mid) -> list[str]:
            return store.list(mid)

        def read_many(store: SyncStore = store, keys: list[str] = keys) -> dict[str, Record]:
            return store.read_many(keys)

        # The cases above repeat one request; these two vary it, so neither a
        # cache of recent keys nor keys asked in the tree's order helps.
        prefixes = itertools.cycle(f"g{g:04}/" for g in range(total // _PER_GROUP))
        scattered = random.Random(7).sample(range(total), _PER_GROUP)
        random_keys = [f"g{i // _PER_GROUP:04}/{i % _PER_GROUP:03}" for i in scattered]

        def list_each_prefix(
            store: SyncStore = store, prefixes: Iterator[str] = prefixes
        ) -> list[str]:
            return store.list(next(prefixes))

        def read_many_random(
            store: SyncStore = store, keys: list[str] = random_keys
        ) -> dict[str, Record]:
            return store.read_many(keys)

        out += [
            _case("read", "read small record", impl, read, check=_is_small),
            _case("write", "write small record", impl, write),
            _case("read_raw", "read bytes record (no codec)", impl, read_raw),
            _case("write_raw", "write bytes record (no codec)", impl, write_raw),
            _case(
                "list",
                f"list 100 keys of {total:,} by prefix",
                impl,
                list_prefix,
                check=lambda r: isinstance(r, list) and len(r) == _PER_GROUP,
            ),
            _case(
                "list_varied",
                "list 100 keys, a new prefix each time",
                impl,
                list_each_prefix,
                check=lambda r: isinstance(r, list) and len(r) == _PER_GROUP,
            ),
            _case(
                "read_many",
                "read_many 100 keys",
                impl,
                read_many,
                check=lambda r: isinstance(r, dict) and len(r) == _PER_GROUP,
            ),
            _case(
                "read_many_raw",
                "read_many 100 bytes records",
                impl,
                read_many_raw,
                check=lambda r: isinstance(r, dict) and len(r) == _PER_GROUP,
            ),
            _case(
                "read_many_random",
                "read_many 100 keys in random order",
                impl,
                read_many_random,
                check=lambda r: isinstance(r, dict) and len(r) == _PER_GROUP,
            ),
        ]
    order = {"read": 0, "write": 1, "read_raw": 2, "write_raw": 3, "list": 4, "list_varied": 5}
    order |= {"read_many": 6, "read_many_raw": 7, "read_many_random": 8}
    return sorted(out, key=lambda c: order[c.name])


def _is_small(record: object) -> bool:
    return isinstance(record, Record) and record.value == SMALL


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not had back (glibc's mallinfo2),
    chunk headers included; None where that is not available."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_record(impl: str, n: int = 100_000, *, shuffled: bool = False) -> dict[str, float]:
    """Bytes a small record costs beyond its key and encoded value.

    The pure twin is measured with tracemalloc. The Rust store's allocations
    are invisible to tracemalloc, so they are measured as the growth of the C
    heap in use (glibc `mallinfo2`, chunk headers included), or failing that
    as the process's RSS growth (an upper bound: it keeps freed temporaries).
    """
    value = b"v" * 16  # stored as is: exactly 16 payload bytes per record
    names = [f"key/{i:08}" for i in range(n)]
    if shuffled:  # random insertion order leaves the tree's nodes fuller than sorted order
        random.Random(42).shuffle(names)
    items = dict.fromkeys(names, value)
    payload = sum(len(k) for k in items) + len(value) * n
    gc.collect()
    store = open_sync("memory://", impl=impl)
    if impl == "python":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        store.write_many(items)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        probe = _malloc_in_use if _malloc_in_use() is not None else _rss
        before = probe() or 0
        store.write_many(items)
        gc.collect()
        used = (probe() or 0) - before
    stats = store.stats()  # type: ignore[attr-defined]
    if (stats["entries"], stats["bytes"]) != (n, payload):
        raise RuntimeError(f"store accounting is off: {stats} for {n} records of {payload} bytes")
    store.close()
    return {
        "records": n,
        "bytes_per_record": used / n,
        "overhead_per_record": (used - payload) / n,
    }
