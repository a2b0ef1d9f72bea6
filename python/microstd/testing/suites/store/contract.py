"""The store contract (DESIGN.md, "store" and "Details settled").

Every test uses its own key prefix and short TTLs, and compares revisions only
by equality, so it holds for any backend: microstd runs it on each of its own
(tests/contract), a plugin author on theirs (`pytest --microstd-store=URL`).
Fixtures: `store`, `sync_store`, `prefix`, `watch_supported`, `store_target`
(microstd.testing.fixtures).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from microstd.errors import Closed, Conflict, EncodeError, InvalidKey, NotFound, NotSupported
from microstd.store import Event, Record, Store, SyncStore
from microstd.testing._marks import mark_async_tests
from microstd.testing.tables import BAD_STORE_KEYS, BAD_TTLS, ids, raises
from microstd.testing.targets import StoreTarget

BAD_KEYS = ["", 1, None, b"key", ("a",)]
TTL = 0.3


async def _expire(store: Store, key: str, timeout: float = 5.0) -> None:
    """Wait until `key` is gone (its TTL has passed)."""
    deadline = time.monotonic() + timeout
    while await store.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        await asyncio.sleep(0.05)


# ---- read / write --------------------------------------------------------------


async def test_write_then_read_returns_a_copy(store: Store, prefix: str) -> None:
    value: dict[str, Any] = {"name": "ada", "tags": ["a", "b"], "n": 3, "f": 1.5, "none": None}
    rev = await store.write(prefix + "k", value, metadata={"owner": "x"})
    value["tags"].append("mutated after write")
    first = await store.read(prefix + "k")
    assert isinstance(first, Record)
    assert first.key == prefix + "k"
    assert first.value == {"name": "ada", "tags": ["a", "b"], "n": 3, "f": 1.5, "none": None}
    assert first.metadata == {"owner": "x"}
    assert first.revision == rev
    assert first.expires_at is None
    first.value["tags"].append("mutated after read")
    second = await store.read(prefix + "k")
    assert second.value["tags"] == ["a", "b"]  # type: ignore[index]


async def test_bytes_round_trip_as_bytes(store: Store, prefix: str) -> None:
    await store.write(prefix + "raw", b"\x00\xffbinary")
    rec = await store.read(prefix + "raw")
    assert rec.value == b"\x00\xffbinary"
    assert type(rec.value) is bytes


async def test_missing_key_is_not_found(store: Store, prefix: str) -> None:
    with pytest.raises(NotFound):
        await store.read(prefix + "missing")
    with pytest.raises(KeyError):
        await store.read(prefix + "missing")
    assert await store.exists(prefix + "missing") is False


async def test_overwrite_changes_value_and_revision(store: Store, prefix: str) -> None:
    r1 = await store.write(prefix + "k", 1)
    r2 = await store.write(prefix + "k", 2)
    assert r1 != r2
    rec = await store.read(prefix + "k")
    assert (rec.value, rec.revision) == (2, r2)


async def test_revision_differs_after_delete_and_recreate(store: Store, prefix: str) -> None:
    r1 = await store.write(prefix + "k", 1)
    await store.delete(prefix + "k")
    r2 = await store.write(prefix + "k", 1)
    assert r1 != r2


# ---- conditional writes --------------------------------------------------------


async def test_if_revision(store: Store, prefix: str) -> None:
    r1 = await store.write(prefix + "k", "v1")
    r2 = await store.write(prefix + "k", "v2", if_revision=r1)
    with pytest.raises(Conflict):
        await store.write(prefix + "k", "stale", if_revision=r1)
    rec = await store.read(prefix + "k")
    assert (rec.value, rec.revision) == ("v2", r2)


async def test_if_revision_on_missing_or_deleted_key_conflicts(store: Store, prefix: str) -> None:
    rev = await store.write(prefix + "k", 1)
    await store.delete(prefix + "k")
    with pytest.raises(Conflict):
        await store.write(prefix + "k", 2, if_revision=rev)
    with pytest.raises(NotFound):
        await store.read(prefix + "k")


async def test_if_revision_on_expired_key_conflicts(store: Store, prefix: str) -> None:
    rev = await store.write(prefix + "k", 1, ttl=TTL)
    await _expire(store, prefix + "k")
    with pytest.raises(Conflict):
        await store.write(prefix + "k", 2, if_revision=rev)


async def test_if_absent(store: Store, prefix: str) -> None:
    await store.write(prefix + "k", 1, if_absent=True)
    with pytest.raises(Conflict):
        await store.write(prefix + "k", 2, if_absent=True)
    assert (await store.read(prefix + "k")).value == 1
    await store.delete(prefix + "k")
    await store.write(prefix + "k", 3, if_absent=True)
    assert (await store.read(prefix + "k")).value == 3


async def test_concurrent_compare_and_set_is_exact(store: Store, prefix: str) -> None:
    key = prefix + "counter"
    await store.write(key, 0)

    async def increment(times: int) -> None:
        for _ in range(times):
            while True:
                rec = await store.read(key)
                try:
                    await store.write(key, rec.value + 1, if_revision=rec.revision)  # type: ignore[operator]
                    break
                except Conflict:
                    await asyncio.sleep(0)

    await asyncio.gather(*(increment(10) for _ in range(5)))
    assert (await store.read(key)).value == 50


# ---- delete, batches -----------------------------------------------------------


async def test_delete(store: Store, prefix: str) -> None:
    await store.write(prefix + "k", 1)
    assert await store.delete(prefix + "k") is True
    assert await store.delete(prefix + "k") is False
    assert await store.exists(prefix + "k") is False


async def test_batches(store: Store, prefix: str) -> None:
    revs = await store.write_many({prefix + "a": 1, prefix + "b": b"two", prefix + "c": [3]})
    got = await store.read_many([prefix + "a", prefix + "missing", prefix + "b", prefix + "c"])
    assert set(got) == {prefix + "a", prefix + "b", prefix + "c"}
    assert got[prefix + "b"].value == b"two"
    assert got[prefix + "c"].value == [3]
    assert all(got[k].revision == revs[k] for k in revs)
    assert await store.delete_many([prefix + "a", prefix + "b", prefix + "missing"]) == 2
    assert await store.list(prefix) == [prefix + "c"]


# ---- list ----------------------------------------------------------------------


async def test_list_filters_then_pages_in_order(store: Store, prefix: str) -> None:
    names = ["b/2.json", "a/1.json", "b/1.json", "b/3.txt", "c.json", "b/4.json"]
    await store.write_many({prefix + n: n for n in names})
    assert await store.list(prefix) == sorted(prefix + n for n in names)
    assert await store.list(prefix + "b/") == [
        prefix + n for n in ["b/1.json", "b/2.json", "b/3.txt", "b/4.json"]
    ]
    assert await store.list(prefix + "b/", ".json") == [
        prefix + n for n in ["b/1.json", "b/2.json", "b/4.json"]
    ]
    assert await store.list(prefix + "b/", ".json", limit=2, offset=1) == [
        prefix + "b/2.json",
        prefix + "b/4.json",
    ]
    assert await store.list(prefix, limit=0) == []
    assert await store.list(prefix + "zzz") == []


# ---- TTL -----------------------------------------------------------------------


async def test_ttl_expires_records_everywhere(store: Store, prefix: str) -> None:
    before = time.time()
    await store.write(prefix + "short", "x", ttl=TTL)
    await store.write(prefix + "long", "y")
    try:
        rec = await store.read(prefix + "short")
    except NotFound:
        # Gone already: right only if the TTL has passed (a loaded machine, a slow server).
        assert time.time() - before >= TTL, "a record was gone before its TTL"
    else:
        assert rec.expires_at is not None
        assert before + TTL - 1 <= rec.expires_at <= time.time() + TTL + 1
    await _expire(store, prefix + "short")
    with pytest.raises(NotFound):
        await store.read(prefix + "short")
    assert await store.list(prefix) == [prefix + "long"]
    assert set(await store.read_many([prefix + "short", prefix + "long"])) == {prefix + "long"}
    assert await store.delete(prefix + "short") is False


async def test_overwrite_without_ttl_clears_the_ttl(store: Store, prefix: str) -> None:
    await store.write(prefix + "k", 1, ttl=TTL)
    await store.write(prefix + "k", 2)
    assert (await store.read(prefix + "k")).expires_at is None
    await asyncio.sleep(TTL + 0.2)
    assert (await store.read(prefix + "k")).value == 2


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_raise_invalid_key(store: Store, key: object) -> None:
    with pytest.raises(InvalidKey):
        await store.write(key, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.read(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.exists(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.delete(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        await store.read_many(["fine", key])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await store.write(key, 1)  # type: ignore[arg-type]


async def test_unencodable_value_stores_nothing(store: Store, prefix: str) -> None:
    with pytest.raises(EncodeError):
        await store.write(prefix + "k", {"bad": object()})
    assert await store.exists(prefix + "k") is False
    await store.write(prefix + "k", "kept")
    with pytest.raises(EncodeError):
        await store.write(prefix + "k", [1, object()])
    assert (await store.read(prefix + "k")).value == "kept"
    with pytest.raises(EncodeError):
        await store.write_many({prefix + "a": 1, prefix + "b": object()})
    assert await store.exists(prefix + "a") is False


async def test_a_batch_with_an_unencodable_value_stores_nothing(store: Store, prefix: str) -> None:
    """`write_many` is all or nothing: one value that cannot be encoded, anywhere
    in the batch, leaves every key as it was (value and revision).

    The `Store` base's default `write_many` writes one key at a time and puts
    back what it wrote when a later write fails: the value is the old one again,
    put back by a write, so under another revision. A backend that inherits it
    is held to the value; one with its own `write_many` to the revision too."""
    inherits_default = type(store).write_many is Store.write_many
    rev = await store.write(prefix + "kept", "old")
    for bad_at in (0, 2, 4):
        items: dict[str, object] = {prefix + "kept": "new"}
        items.update({prefix + f"n{i}": i for i in range(4)})
        names = list(items)
        items[names[bad_at]] = {"bad": object()}
        with pytest.raises(EncodeError):
            await store.write_many(items)
        kept = await store.read(prefix + "kept")
        assert kept.value == "old"
        if not inherits_default:
            assert kept.revision == rev
        assert await store.list(prefix) == [prefix + "kept"]


async def test_a_batch_gives_each_key_a_new_revision(
    store: Store, watch_supported: bool, prefix: str
) -> None:
    """Every key of a batch gets its own new revision (none reused, none shared),
    its TTL, and, where watch is supported, a "put" event carrying that revision."""
    before = await store.write(prefix + "b/a", "old")
    events = store.watch(prefix + "b/") if watch_supported else None
    try:
        revs = await store.write_many({prefix + f"b/{n}": n for n in "abc"}, ttl=60)
        assert len({before, *revs.values()}) == 4
        records = await store.read_many(list(revs))
        assert {k: (r.value, r.revision) for k, r in records.items()} == {
            prefix + f"b/{n}": (n, revs[prefix + f"b/{n}"]) for n in "abc"
        }
        assert all(r.expires_at is not None for r in records.values())
        if events is not None:
            got = [await _next(events) for _ in range(3)]
            assert {(e.kind, e.key) for e in got} == {("put", k) for k in revs}
            assert {e.key: e.record.revision for e in got if e.record} == revs
    finally:
        if events is not None:
            await events.aclose()  # type: ignore[attr-defined]


async def test_metadata_must_map_str_to_str(store: Store, prefix: str) -> None:
    with pytest.raises(TypeError):
        await store.write(prefix + "k", 1, metadata={"a": 1})  # type: ignore[dict-item]
    assert await store.exists(prefix + "k") is False


# ---- watch ---------------------------------------------------------------------


async def _next(events: object, timeout: float = 5.0) -> Event:
    result: Event = await asyncio.wait_for(events.__anext__(), timeout)  # type: ignore[attr-defined]
    return result


async def test_watch_reports_changes_in_order(
    store: Store, watch_supported: bool, prefix: str
) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            store.watch(prefix)
        return
    events = store.watch(prefix + "w/")
    try:
        await store.write(prefix + "other", 0)
        r1 = await store.write(prefix + "w/a", 1)
        await store.write(prefix + "w/b", 2)
        await store.delete(prefix + "w/a")
        got = [await _next(events) for _ in range(3)]
        assert [(e.kind, e.key) for e in got] == [
            ("put", prefix + "w/a"),
            ("put", prefix + "w/b"),
            ("delete", prefix + "w/a"),
        ]
        assert got[0].record is not None
        assert (got[0].record.value, got[0].record.revision) == (1, r1)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_watch_reports_expiry(store: Store, watch_supported: bool, prefix: str) -> None:
    if not watch_supported:
        return
    events = store.watch(prefix)
    try:
        await store.write(prefix + "t", 1, ttl=TTL)
        assert (await _next(events)).kind == "put"
        # Nothing touches the key: the backend must notice the expiry itself.
        ev = await _next(events)
        assert (ev.kind, ev.key) == ("expire", prefix + "t")
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# ---- the blocking surface ------------------------------------------------------


def test_sync_round_trip_and_conditions(sync_store: SyncStore, prefix: str) -> None:
    rev = sync_store.write(prefix + "k", {"a": 1}, metadata={"m": "v"})
    rec = sync_store.read(prefix + "k")
    assert (rec.value, rec.metadata, rec.revision) == ({"a": 1}, {"m": "v"}, rev)
    with pytest.raises(Conflict):
        sync_store.write(prefix + "k", 2, if_absent=True)
    rev2 = sync_store.write(prefix + "k", 2, if_revision=rev)
    with pytest.raises(Conflict):
        sync_store.write(prefix + "k", 3, if_revision=rev)
    assert sync_store.read(prefix + "k").revision == rev2
    assert sync_store.exists(prefix + "k")
    assert sync_store.delete(prefix + "k") is True
    with pytest.raises(NotFound):
        sync_store.read(prefix + "k")
    with pytest.raises(InvalidKey):
        sync_store.write("", 1)


def test_sync_batches_and_list(sync_store: SyncStore, prefix: str) -> None:
    sync_store.write_many({prefix + f"k{i}": i for i in range(5)})
    assert sync_store.list(prefix, limit=2, offset=1) == [prefix + "k1", prefix + "k2"]
    assert set(sync_store.read_many([prefix + "k0", prefix + "nope"])) == {prefix + "k0"}
    assert sync_store.delete_many([prefix + "k0", prefix + "k1"]) == 2


def test_sync_ttl(sync_store: SyncStore, prefix: str) -> None:
    sync_store.write(prefix + "t", 1, ttl=TTL)
    deadline = time.monotonic() + 5
    while sync_store.exists(prefix + "t"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(NotFound):
        sync_store.read(prefix + "t")


def test_eight_threads_compare_and_set_exactly(sync_store: SyncStore, prefix: str) -> None:
    key = prefix + "counter"
    sync_store.write(key, 0)
    per_thread = 25

    def work() -> None:
        for _ in range(per_thread):
            while True:
                rec = sync_store.read(key)
                try:
                    sync_store.write(key, rec.value + 1, if_revision=rec.revision)  # type: ignore[operator]
                    break
                except Conflict:
                    continue

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sync_store.read(key).value == 8 * per_thread


def test_sync_watch(sync_store: SyncStore, watch_supported: bool, prefix: str) -> None:
    if not watch_supported:
        with pytest.raises(NotSupported):
            next(iter(sync_store.watch(prefix)))
        return
    events = sync_store.watch(prefix)
    sync_store.write(prefix + "a", 1)
    sync_store.write(prefix + "b", 2, ttl=TTL)
    sync_store.delete(prefix + "a")
    got = [next(events) for _ in range(4)]
    assert [(e.kind, e.key) for e in got] == [
        ("put", prefix + "a"),
        ("put", prefix + "b"),
        ("delete", prefix + "a"),
        ("expire", prefix + "b"),
    ]
    events.close()  # type: ignore[attr-defined]


# ---- one table of bad arguments (microstd.testing.tables) -----------------------


@pytest.mark.parametrize(("key", "cls", "message"), BAD_STORE_KEYS, ids=ids(BAD_STORE_KEYS))
async def test_bad_keys_raise_the_shared_error(
    store: Store, key: Any, cls: type[Exception], message: str
) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.write(key, 1),
        lambda: store.read(key),
        lambda: store.write_many({key: 1}),
    ]
    for call in calls:
        with raises(cls, message):
            await call()


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=ids(BAD_TTLS))
async def test_bad_ttls_raise_the_shared_error(
    store: Store, prefix: str, ttl: Any, cls: type[Exception], message: str
) -> None:
    key = prefix + "k"
    with raises(cls, message):
        await store.write(key, 1, ttl=ttl)
    with raises(cls, message):
        await store.write_many({key: 1}, ttl=ttl)
    assert not await store.exists(key), "a refused write stores nothing"


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=ids(BAD_TTLS))
def test_sync_bad_ttls_raise_the_shared_error(
    sync_store: SyncStore, prefix: str, ttl: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        sync_store.write(prefix + "k", 1, ttl=ttl)


@pytest.mark.parametrize(("key", "cls", "message"), BAD_STORE_KEYS, ids=ids(BAD_STORE_KEYS))
def test_sync_bad_keys_raise_the_shared_error(
    sync_store: SyncStore, key: Any, cls: type[Exception], message: str
) -> None:
    with raises(cls, message):
        sync_store.write(key, 1)


# ---- close() means closed ------------------------------------------------------


async def test_close_means_closed(store_target: StoreTarget) -> None:
    store = store_target.open()
    async with store:
        await store.write("k", 1)
        assert not store.closed
    assert store.closed
    await store.close()  # idempotent
    calls: list[Callable[[], Awaitable[object]]] = [
        store.connect,
        lambda: store.write("k", 2),
        lambda: store.read("k"),
        lambda: store.read_many(["k"]),
        lambda: store.write_many({"k": 2}),
        lambda: store.exists("k"),
        lambda: store.delete("k"),
        lambda: store.list(),
    ]
    for call in calls:
        with pytest.raises(Closed, match="is closed"):
            await call()


def test_sync_close_means_closed(store_target: StoreTarget) -> None:
    store = store_target.open_sync()
    with store:
        store.write(f"k-{uuid.uuid4().hex}", 1)
    assert store.closed
    store.close()
    calls: list[Callable[[], object]] = [
        store.connect,
        lambda: store.write("k", 2),
        lambda: store.read("k"),
        lambda: store.exists("k"),
        lambda: store.delete("k"),
        lambda: store.list(),
    ]
    for call in calls:
        with pytest.raises(Closed, match="is closed"):
            call()


mark_async_tests(globals())
