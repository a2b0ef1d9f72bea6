"""memory:// specifics, on both twins: bounds, eviction, stats, sweep, shared
instances, codecs, watch wake-ups and overflow, close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import microstd.store
from microstd import _accel
from microstd.codec import Codec, get
from microstd.errors import Closed, Conflict, EncodeError, NotFound
from microstd.store.memory import SyncMemoryStore, new_core

IMPLS = ["rust", "python"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(impl: str) -> Iterator[microstd.store.SyncStore]:
    with microstd.store.open_sync("memory://", impl=impl) as s:
        yield s


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_impl_selects_the_engine(impl: str) -> None:
    s = microstd.store.open_sync(f"memory://?impl={impl}")
    assert isinstance(s, SyncMemoryStore)
    expected = "RustMemoryStore" if impl == "rust" and _accel.AVAILABLE else "PythonMemoryStore"
    assert expected in repr(s)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="impl"):
        microstd.store.open_sync("memory://", impl="go")
    with pytest.raises(TypeError, match="colour"):
        microstd.store.open_sync("memory://", colour="red")
    with pytest.raises(ValueError):
        microstd.store.open_sync("memory://", max_entries=0)


def test_both_ifs_at_once_is_an_error(store: microstd.store.SyncStore) -> None:
    rev = store.write("k", 1)
    with pytest.raises(ValueError):
        store.write("k", 2, if_revision=rev, if_absent=True)


def test_foreign_revisions_never_match(store: microstd.store.SyncStore) -> None:
    rev = store.write("k", 1)
    for foreign in [str(rev), float(rev) + 0.5, True, -1, None if rev else 0]:
        if foreign is None:
            continue
        with pytest.raises(Conflict):
            store.write("k", 2, if_revision=foreign)


def test_reads_of_one_record_are_equal(store: microstd.store.SyncStore) -> None:
    store.write("k", {"a": [1]}, ttl=60)
    first, second = store.read("k"), store.read("k")
    assert first == second
    assert first.value is not second.value


def test_private_instances_are_separate(impl: str) -> None:
    a = microstd.store.open_sync("memory://", impl=impl)
    b = microstd.store.open_sync("memory://", impl=impl)
    a.write("k", 1)
    assert not b.exists("k")


async def test_named_instances_are_shared_by_both_surfaces(impl: str) -> None:
    name = _name()
    sync = microstd.store.open_sync(f"memory://{name}", impl=impl)
    async with microstd.store.open(f"memory://{name}?impl={impl}") as a:
        sync.write("k", "from sync")
        assert (await a.read("k")).value == "from sync"
    # Closing one handle leaves the shared data to the others.
    assert sync.read("k").value == "from sync"
    other_impl = "python" if impl == "rust" else "rust"
    # Each impl has its own instances; without the core both impls are the pure twin.
    other = microstd.store.open_sync(f"memory://{name}", impl=other_impl)
    assert other.exists("k") is (not _accel.AVAILABLE)


async def test_closed_handles_raise_closed(impl: str) -> None:
    s = microstd.store.open("memory://", impl=impl)
    await s.write("k", 1)
    await s.close()
    with pytest.raises(Closed):
        await s.read("k")
    with microstd.store.open_sync("memory://", impl=impl) as sync:
        sync.write("k", 1)
    with pytest.raises(Closed):
        sync.write("k", 2)


def test_stats_count_keys_values_and_metadata(store: microstd.store.SyncStore) -> None:
    stats = store.stats  # type: ignore[attr-defined]
    assert stats() == {"entries": 0, "bytes": 0}
    store.write("ab", b"12345", metadata={"m": "vv"})
    assert stats() == {"entries": 1, "bytes": 2 + 5 + 3}
    store.write("ab", b"1")
    assert stats() == {"entries": 1, "bytes": 3}
    store.write("é", b"")  # keys count in UTF-8 bytes
    assert stats()["bytes"] == 3 + 2
    store.delete_many(["ab", "é"])
    assert stats() == {"entries": 0, "bytes": 0}


def test_sweep_reclaims_records_nobody_touches(impl: str) -> None:
    core = new_core(impl)
    core.write_many({f"k{i:04}": i for i in range(200)}, ttl=0.2)
    core.write("keep", 1)
    time.sleep(0.3)
    # Unrelated operations reclaim expired records a bounded batch at a time ...
    for _ in range(3):
        core.exists("keep")
    assert core.list() == ["keep"]
    # ... and a full sweep takes the rest.
    assert core.sweep() > 0
    assert core.stats()["entries"] == 1


def test_eviction_order(impl: str) -> None:
    s = microstd.store.open_sync("memory://", impl=impl, max_entries=3)
    s.write("old", 1)
    s.write("late", 1, ttl=100)
    s.write("soon", 1, ttl=50)
    s.write("new", 1)  # evicts the soonest-expiring: soon
    assert s.list() == ["late", "new", "old"]
    s.write("newer", 1)  # then the other TTL record: late
    assert s.list() == ["new", "newer", "old"]
    s.write("newest", 1)  # then the oldest-written: old
    assert s.list() == ["new", "newer", "newest"]
    s.write("new", 2)  # an overwrite makes "new" the newest-written
    s.write("extra", 1)
    assert s.list() == ["extra", "new", "newest"]


def test_max_bytes(impl: str) -> None:
    s = microstd.store.open_sync("memory://?max_bytes=20", impl=impl)
    s.write("a", b"x" * 9)
    s.write("b", b"x" * 9)
    s.write("c", b"x" * 9)
    assert s.list() == ["b", "c"]
    with pytest.raises(MemoryError):
        s.write("big", b"x" * 30)
    assert s.list() == ["b", "c"]


def test_codec_option(impl: str) -> None:
    s = microstd.store.open_sync("memory://", impl=impl, codec="application/json")
    s.write("k", {"a": [1, 2]})
    s.write("raw", b"\x00bytes stay bytes")
    assert s.read("k").value == {"a": [1, 2]}
    assert s.read("raw").value == b"\x00bytes stay bytes"
    with pytest.raises(EncodeError):
        s.write("bad", object())
    assert not s.exists("bad")

    def shout(obj: object) -> bytes:
        return str(obj).upper().encode()

    custom = Codec("text/x-shout", shout, lambda b: bytes(b).decode())
    s2 = microstd.store.open_sync("memory://", impl=impl, codec=custom)
    s2.write("k", "hi")
    assert s2.read("k").value == "HI"
    assert get("application/json").content_type == "application/json"


def test_codec_returning_non_bytes_is_an_encode_error(impl: str) -> None:
    bad = Codec("text/x-bad", lambda obj: "not bytes", lambda b: b)  # type: ignore[arg-type,return-value]
    s = microstd.store.open_sync("memory://", impl=impl, codec=bad)
    with pytest.raises(EncodeError):
        s.write("k", 1)
    with pytest.raises(NotFound):
        s.read("k")


def test_list_arguments_are_checked(store: microstd.store.SyncStore) -> None:
    with pytest.raises(ValueError):
        store.list(limit=-1)
    with pytest.raises(ValueError):
        store.list(offset=-1)
    with pytest.raises(TypeError):
        store.list(prefix=1)  # type: ignore[arg-type]


def test_repeated_listings_follow_every_change(store: microstd.store.SyncStore) -> None:
    # Listing the same keys again and again (served from the Rust store's
    # cache of key objects) must still reflect deletes, rewrites and new keys;
    # non-ASCII and long keys take the uncached path.
    long = "p/" + "x" * 60
    keys = [f"p/{i:04}" for i in range(300)] + ["p/é", "p/日本", long]
    store.write_many(dict.fromkeys(keys, b"v"))
    for _ in range(3):
        assert store.list("p/") == sorted(keys)
    store.delete("p/0007")
    store.delete(long)
    store.write("p/0007x", b"v")
    expected = sorted(set(keys) - {"p/0007", long} | {"p/0007x"})
    for _ in range(3):
        assert store.list("p/") == expected
        assert store.list("p/", limit=5, offset=3) == expected[3:8]
        with_7 = [k for k in expected if k.startswith("p/00") and k.endswith("7")]
        assert store.list("p/00", suffix="7") == with_7
    got = store.read_many(["p/0009", "p/0008", "p/0007", "p/0007x", "p/0010", "missing"])
    assert list(got) == ["p/0009", "p/0008", "p/0007x", "p/0010"]


def test_eight_threads_increment_exactly(impl: str) -> None:
    s = microstd.store.open_sync("memory://", impl=impl)
    s.write("n", 0)
    per_thread = 200

    def work() -> None:
        for _ in range(per_thread):
            while True:
                rec = s.read("n")
                try:
                    s.write("n", rec.value + 1, if_revision=rec.revision)  # type: ignore[operator]
                    break
                except Conflict:
                    continue

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.read("n").value == 8 * per_thread


def test_watch_order_with_many_writers(impl: str) -> None:
    core = new_core(impl)
    watcher = core.watch("")
    done = []

    def writer(tag: str) -> None:
        for i in range(100):
            core.write(f"{tag}/{i:03}", i)
        done.append(tag)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = watcher.drain()
    assert events is not None
    assert len(events) == 400
    revisions = [e.record.revision for e in events if e.record is not None]
    assert revisions == sorted(revisions)
    for tag in "abcd":
        assert [e.key for e in events if e.key.startswith(tag)] == [
            f"{tag}/{i:03}" for i in range(100)
        ]


def test_watch_overflow_ends_the_watch(impl: str) -> None:
    core = new_core(impl)
    watcher = core.watch("", 5)
    for i in range(6):
        core.write(f"k{i}", i)
    with pytest.raises(Closed, match="behind"):
        watcher.drain()
    assert watcher.closed
    core.write("more", 1)  # the store keeps working without the dead watcher


def test_watch_prefix_and_close(impl: str) -> None:
    s = microstd.store.open_sync("memory://", impl=impl)
    events = s.watch("p/")
    s.write("q/x", 1)
    s.write("p/x", 1)
    assert next(events).key == "p/x"
    s.close()
    with pytest.raises(StopIteration):
        next(events)


async def test_async_watch_wakes_for_a_writer_thread(impl: str) -> None:
    name = _name()
    sync = microstd.store.open_sync(f"memory://{name}", impl=impl)
    async with microstd.store.open(f"memory://{name}", impl=impl) as s:
        events = s.watch("")
        writer = threading.Timer(0.05, sync.write, args=("from-thread", 1))
        writer.start()
        ev = await asyncio.wait_for(events.__anext__(), 5)
        writer.join()
        assert (ev.kind, ev.key) == ("put", "from-thread")
        await events.aclose()  # type: ignore[attr-defined]


async def test_async_watch_ends_when_the_store_closes(impl: str) -> None:
    s = microstd.store.open("memory://", impl=impl)
    events = s.watch("")
    await s.write("k", 1)
    assert (await events.__anext__()).kind == "put"
    waiting = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.01)
    await s.close()
    await s.__aexit__(None, None, None)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 5)


def test_a_failing_waker_does_not_break_writes(impl: str) -> None:
    core = new_core(impl)
    watcher = core.watch("")
    seen: list[object] = []

    def broken() -> None:
        raise RuntimeError("waker failed")

    watcher.set_waker(broken)
    hook = __import__("sys").unraisablehook
    __import__("sys").unraisablehook = seen.append
    try:
        core.write("k", 1)
    finally:
        __import__("sys").unraisablehook = hook
    assert len(seen) == 1
    events = watcher.drain()
    assert events is not None
    assert [e.key for e in events] == ["k"]
