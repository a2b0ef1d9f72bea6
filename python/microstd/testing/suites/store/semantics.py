"""The store contract's finer points (DESIGN.md).

Each test gets a fresh, empty store (the target's), so it can assert on the
whole key space; the main suite (contract.py) also works within key prefixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from microstd.errors import Conflict, EncodeError, InvalidKey, NotFound, NotSupported
from microstd.store import Event, Store, SyncStore
from microstd.testing._marks import mark_async_tests
from microstd.testing.targets import StoreTarget

TTL = 0.4
PAST_TTL = 0.9  # comfortably after TTL has run out


# -- values, records, revisions ----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "b": [1, 2.5, "x"]}, [1, 2, 3], "text é", 42, -1.5, None, True, b"\x00\xffraw"],
)
async def test_write_read_round_trip(store: Store, value: object) -> None:
    rev = await store.write("k", value)
    rec = await store.read("k")
    assert rec.key == "k"
    assert rec.value == value
    assert type(rec.value) is type(value)
    assert rec.revision == rev
    assert rec.metadata == {}
    assert rec.expires_at is None


async def test_read_is_a_copy(store: Store) -> None:
    value = {"items": [1, 2]}
    await store.write("k", value)
    value["items"].append(3)
    first = await store.read("k")
    assert first.value == {"items": [1, 2]}
    first.value["items"].append(4)
    assert (await store.read("k")).value == {"items": [1, 2]}


async def test_missing_key_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.read("nope")
    with pytest.raises(KeyError):
        await store.read("nope")
    assert not await store.exists("nope")


async def test_metadata_round_trips(store: Store) -> None:
    await store.write("k", 1, metadata={"owner": "ann", "note": 'ünï: côdé, "q"'})
    assert (await store.read("k")).metadata == {"owner": "ann", "note": 'ünï: côdé, "q"'}
    await store.write("k", 2)
    assert (await store.read("k")).metadata == {}


async def test_revisions_change_on_every_write(store: Store) -> None:
    revs = [await store.write("k", "same") for _ in range(3)]
    revs.append(await store.write("other", "same"))
    assert len({repr(r) for r in revs}) == 4
    assert all(a != b for i, a in enumerate(revs) for b in revs[i + 1 :])
    assert (await store.read("k")).revision == revs[2]


# -- conditional writes ----------------------------------------------------------------


async def test_if_revision(store: Store) -> None:
    old = await store.write("k", 1)
    new = await store.write("k", 2, if_revision=old)
    with pytest.raises(Conflict):
        await store.write("k", 3, if_revision=old)
    rec = await store.read("k")
    assert (rec.value, rec.revision) == (2, new)


async def test_if_revision_on_missing_deleted_or_expired_key_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.write("missing", 1, if_revision=await store.write("elsewhere", 0))
    rev = await store.write("gone", 1)
    assert await store.delete("gone")
    with pytest.raises(Conflict):
        await store.write("gone", 2, if_revision=rev)
    assert not await store.exists("gone")
    rev = await store.write("brief", 1, ttl=TTL)
    await asyncio.sleep(PAST_TTL)
    with pytest.raises(Conflict):
        await store.write("brief", 2, if_revision=rev)


async def test_if_absent(store: Store) -> None:
    await store.write("k", 1, if_absent=True)
    with pytest.raises(Conflict):
        await store.write("k", 2, if_absent=True)
    assert (await store.read("k")).value == 1
    await store.delete("k")
    await store.write("k", 3, if_absent=True)
    assert (await store.read("k")).value == 3
    await store.write("brief", 1, ttl=TTL)
    await asyncio.sleep(PAST_TTL)
    await store.write("brief", 2, if_absent=True)
    assert (await store.read("brief")).value == 2


# -- delete, many ----------------------------------------------------------------------


async def test_delete(store: Store) -> None:
    await store.write("k", 1)
    assert await store.delete("k") is True
    assert await store.delete("k") is False
    assert await store.delete("never") is False
    with pytest.raises(NotFound):
        await store.read("k")


async def test_many(store: Store) -> None:
    revs = await store.write_many({"a": 1, "b": b"two", "c": [3]})
    assert set(revs) == {"a", "b", "c"}
    recs = await store.read_many(["a", "b", "missing", "c"])
    assert {k: r.value for k, r in recs.items()} == {"a": 1, "b": b"two", "c": [3]}
    assert {k: r.revision for k, r in recs.items()} == revs
    assert await store.delete_many(["a", "missing", "c"]) == 2
    assert await store.list() == ["b"]


# -- list ----------------------------------------------------------------------------


async def test_list_sorted_filtered_paged(store: Store) -> None:
    keys = ["b/2.json", "a/1.json", "a/2.txt", "a/10.json", "ab", "c", "a/é.json", "A/x.json"]
    for key in keys:
        await store.write(key, key)
    assert await store.list() == sorted(keys)
    assert await store.list(prefix="a/") == ["a/1.json", "a/10.json", "a/2.txt", "a/é.json"]
    assert await store.list(suffix=".json") == sorted(k for k in keys if k.endswith(".json"))
    assert await store.list(prefix="a/", suffix=".json") == ["a/1.json", "a/10.json", "a/é.json"]
    assert await store.list(prefix="a/", limit=2) == ["a/1.json", "a/10.json"]
    assert await store.list(prefix="a/", limit=2, offset=2) == ["a/2.txt", "a/é.json"]
    assert await store.list(offset=100) == []
    assert await store.list(limit=0) == []
    assert await store.list(prefix="zzz") == []
    pages = [await store.list(limit=3, offset=i) for i in range(0, len(keys), 3)]
    assert [k for p in pages for k in p] == sorted(keys)


async def test_list_bad_paging(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.list(limit=-1)
    with pytest.raises(ValueError):
        await store.list(offset=-1)


# -- TTL -----------------------------------------------------------------------------


async def test_ttl_expiry(store: Store) -> None:
    before = time.time()
    await store.write("brief", 1, ttl=TTL)
    await store.write("lasting", 2)
    rec = await store.read("brief")
    assert rec.expires_at is not None
    assert before + TTL - 0.05 <= rec.expires_at <= time.time() + TTL + 0.05
    assert await store.exists("brief")
    await asyncio.sleep(PAST_TTL)
    with pytest.raises(NotFound):
        await store.read("brief")
    assert not await store.exists("brief")
    assert await store.list() == ["lasting"]
    assert set(await store.read_many(["brief", "lasting"])) == {"lasting"}


async def test_rewrite_without_ttl_clears_it(store: Store) -> None:
    await store.write("k", 1, ttl=TTL)
    await store.write("k", 2)
    assert (await store.read("k")).expires_at is None
    await asyncio.sleep(PAST_TTL)
    assert (await store.read("k")).value == 2


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_bad_ttl(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.write("k", 1, ttl=ttl)
    assert not await store.exists("k")


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", 1, None, b"k", ("k",), "bad\ud800surrogate"])
async def test_invalid_keys(store: Store, key: object) -> None:
    with pytest.raises(InvalidKey):
        await store.write(key, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.read(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.delete(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.exists(key)  # type: ignore[arg-type]
    assert await store.list() == []


async def test_unencodable_value_stores_nothing(store: Store) -> None:
    with pytest.raises(EncodeError):
        await store.write("k", object())
    with pytest.raises(EncodeError):
        await store.write("k", {"nested": [1, {2: object()}]})
    assert await store.list() == []
    await store.write("kept", 1)
    with pytest.raises(EncodeError):
        await store.write("kept", object())
    with pytest.raises(EncodeError):
        await store.write_many({"x": 1, "y": object()})
    assert (await store.read("kept")).value == 1
    assert await store.list() == ["kept"]


async def test_bad_metadata(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.write("k", 1, metadata={"a": 1})  # type: ignore[dict-item]
    assert not await store.exists("k")


# -- watch -------------------------------------------------------------------------------


async def _primed_watch(
    store: Store, prefix: str
) -> tuple[list[Event], asyncio.Task[None], asyncio.Event]:
    """A running watch, proven live: it has seen a write made after it started."""
    seen: list[Event] = []
    changed = asyncio.Event()

    async def run() -> None:
        async for ev in store.watch(prefix):
            seen.append(ev)
            changed.set()

    task = asyncio.create_task(run())
    deadline = time.monotonic() + 10
    while not any(e.key == prefix + "prime" for e in seen):
        assert time.monotonic() < deadline, "watch never started"
        await store.write(prefix + "prime", 0)
        await asyncio.sleep(0.05)
    return seen, task, changed


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _until(seen: list[Event], changed: asyncio.Event, done: object) -> None:
    deadline = time.monotonic() + 10
    while not done(seen):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"events so far: {seen}"
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), 0.5)
        except asyncio.TimeoutError:
            continue


async def test_watch_put_and_delete(store: Store, watch_supported: bool) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            store.watch("w/")
        return
    seen, task, changed = await _primed_watch(store, "w/")
    try:
        rev = await store.write("w/a", {"v": 1}, metadata={"m": "1"})
        await store.write("other/x", 1)
        await store.delete("w/a")
        await store.write("w/b", 2)
        await _until(seen, changed, lambda s: any(e.key == "w/b" for e in s))
    finally:
        await _stop(task)
    real = [e for e in seen if not e.key.endswith("prime")]
    assert [(e.kind, e.key) for e in real] == [("put", "w/a"), ("delete", "w/a"), ("put", "w/b")]
    put = real[0].record
    assert put is not None
    assert (put.key, put.value, put.metadata, put.revision) == ("w/a", {"v": 1}, {"m": "1"}, rev)


async def test_watch_expire(store: Store, watch_supported: bool) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            store.watch("e/")
        return
    seen, task, changed = await _primed_watch(store, "e/")
    try:
        await store.write("e/brief", 1, ttl=TTL)
        await _until(seen, changed, lambda s: any(e.kind == "expire" for e in s))
    finally:
        await _stop(task)
    kinds = [(e.kind, e.key) for e in seen if not e.key.endswith("prime")]
    assert kinds == [("put", "e/brief"), ("expire", "e/brief")]


async def test_watch_is_live_from_the_call(store: Store, watch_supported: bool) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            store.watch("x/")
        return
    events = store.watch("x/")
    try:
        await store.write("x/a", 1)
        await store.write("y/a", 1)
        await store.delete("x/a")
        got = [await asyncio.wait_for(events.__anext__(), 5) for _ in range(2)]
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [(e.kind, e.key) for e in got] == [("put", "x/a"), ("delete", "x/a")]
    with pytest.raises(StopAsyncIteration):
        await events.__anext__()


async def test_close_ends_watches(store_target: StoreTarget) -> None:
    store = store_target.open()
    await store.connect()
    if not store_target.watch:
        await store.close()
        return
    events = store.watch()
    await store.write("k", 1)
    assert (await asyncio.wait_for(events.__anext__(), 5)).key == "k"
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(events.__anext__(), 5)


# -- the blocking surface ----------------------------------------------------------------


def test_sync_surface(sync_store: SyncStore) -> None:
    rev = sync_store.write("s/1", {"a": 1}, metadata={"m": "v"})
    rec = sync_store.read("s/1")
    assert (rec.value, rec.metadata, rec.revision) == ({"a": 1}, {"m": "v"}, rev)
    with pytest.raises(Conflict):
        sync_store.write("s/1", 2, if_absent=True)
    rev2 = sync_store.write("s/1", 2, if_revision=rev)
    with pytest.raises(Conflict):
        sync_store.write("s/1", 3, if_revision=rev)
    assert sync_store.read("s/1").revision == rev2
    sync_store.write_many({"s/2": b"b", "t/1": 3})
    assert sync_store.list(prefix="s/") == ["s/1", "s/2"]
    assert sync_store.list(suffix="1", limit=1, offset=1) == ["t/1"]
    assert set(sync_store.read_many(["s/1", "s/2", "zz"])) == {"s/1", "s/2"}
    assert sync_store.exists("s/2")
    assert sync_store.delete("s/2")
    assert sync_store.delete_many(["s/1", "zz"]) == 1
    with pytest.raises(NotFound):
        sync_store.read("s/1")
    with pytest.raises(InvalidKey):
        sync_store.write("", 1)
    with pytest.raises(EncodeError):
        sync_store.write("bad", object())
    sync_store.write("brief", 1, ttl=TTL)
    time.sleep(PAST_TTL)
    assert not sync_store.exists("brief")
    assert sync_store.list() == ["t/1"]


def test_sync_watch_is_live_from_the_call(sync_store: SyncStore, watch_supported: bool) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            next(iter(sync_store.watch("p/")))
        return
    events = sync_store.watch("p/")
    sync_store.write("p/a", 1)
    sync_store.write("p/b", 2, ttl=TTL)
    sync_store.delete("p/a")
    got = [next(events) for _ in range(4)]
    events.close()  # type: ignore[attr-defined]
    assert [(e.kind, e.key) for e in got] == [
        ("put", "p/a"),
        ("put", "p/b"),
        ("delete", "p/a"),
        ("expire", "p/b"),
    ]


def test_sync_watch(sync_store: SyncStore, watch_supported: bool) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            sync_store.watch("w/")
        return
    stop = threading.Event()

    def keep_writing() -> None:
        # The watch starts on the first next(); write until it has seen one.
        while not stop.is_set():
            sync_store.write("w/k", "v")
            stop.wait(0.1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    events = sync_store.watch("w/")
    try:
        first = next(events)
    finally:
        stop.set()
        writer.join()
        events.close()  # type: ignore[attr-defined]
    assert (first.kind, first.key) == ("put", "w/k")
    assert first.record is not None
    assert first.record.value == "v"


mark_async_tests(globals())
