"""The Store base class's default `write_many` is all or nothing, for a backend that
writes only the primitives (as a third-party plugin may)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

import microstd.store
from microstd.errors import ConnectionFailed, EncodeError, InvalidArgument, InvalidKey
from microstd.store import Event, Record, Revision, Store


class Primitives(Store):
    """Only the abstract methods, on a memory store; `fail_on` makes writing that key fail."""

    def __init__(self) -> None:
        self.inner = microstd.store.open("memory://")
        self.fail_on: str | None = None
        #: Runs when the write of `fail_on` is about to fail (another client's write).
        self.then: Callable[[], Awaitable[object]] | None = None
        #: Once true, every write and delete fails (the server is gone).
        self.down = False

    async def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision:
        if self.down:
            raise ConnectionFailed("the server is gone")
        if key == self.fail_on:
            if self.then is not None:
                await self.then()
            raise ConnectionFailed("the server went away")
        return await self.inner.write(
            key, value, ttl=ttl, metadata=metadata, if_revision=if_revision, if_absent=if_absent
        )

    async def read(self, key: str, *, type: Any = None) -> Record:
        return await self.inner.read(key, type=type)

    async def delete(self, key: str) -> bool:
        if self.down:
            raise ConnectionFailed("the server is gone")
        return await self.inner.delete(key)

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        return await self.inner.list(prefix, suffix, limit, offset)

    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        return self.inner.watch(prefix)


async def test_a_failed_batch_puts_every_key_back() -> None:
    store = Primitives()
    await store.write("kept", {"v": 1}, ttl=60, metadata={"m": "1"})
    with pytest.raises(EncodeError):
        await store.write_many({"kept": 2, "new": 3, "bad": object()})
    assert await store.list() == ["kept"]
    kept = await store.read("kept")
    assert (kept.value, kept.metadata) == ({"v": 1}, {"m": "1"})
    assert kept.expires_at is not None


async def test_a_backend_error_mid_batch_puts_every_key_back() -> None:
    store = Primitives()
    await store.write("a", "old")
    store.fail_on = "c"
    with pytest.raises(ConnectionFailed):
        await store.write_many({"a": "new", "b": "new", "c": "new"})
    assert await store.list() == ["a"]
    assert (await store.read("a")).value == "old"


async def test_bad_keys_and_ttls_write_nothing() -> None:
    store = Primitives()
    with pytest.raises(InvalidKey):
        await store.write_many({"a": 1, "": 2})
    with pytest.raises(InvalidArgument):
        await store.write_many({"a": 1}, ttl=-1)
    assert await store.list() == []


async def test_a_good_batch_returns_every_revision() -> None:
    store = Primitives()
    revisions = await store.write_many({"a": 1, "b": 2})
    records = await store.read_many(["a", "b"])
    assert {k: r.revision for k, r in records.items()} == revisions


async def test_a_newer_write_by_someone_else_is_not_undone() -> None:
    store = Primitives()
    await store.write("a", "old")

    async def theirs() -> None:
        await store.inner.write("a", "theirs")

    store.fail_on, store.then = "c", theirs
    with pytest.raises(ConnectionFailed):
        await store.write_many({"a": "new", "b": "new", "c": "new"})
    assert {k: r.value for k, r in (await store.read_many(["a", "b", "c"])).items()} == {
        "a": "theirs"
    }


async def test_a_newer_write_to_a_key_absent_before_is_not_undone() -> None:
    store = Primitives()

    async def theirs() -> None:
        await store.inner.write("b", "theirs")

    store.fail_on, store.then = "c", theirs
    with pytest.raises(ConnectionFailed) as caught:
        await store.write_many({"a": "new", "b": "new", "c": "new"})
    assert {k: r.value for k, r in (await store.read_many(["a", "b", "c"])).items()} == {
        "b": "theirs"
    }
    assert getattr(caught.value, "__notes__", None) is None


async def test_a_key_that_cannot_be_checked_is_named_on_the_error() -> None:
    store = Primitives()
    real_read = store.read

    async def unreadable(key: str, *, type: Any = None) -> Record:
        if key == "b" and store.fail_on is None:
            raise ConnectionFailed("the server is gone")
        return await real_read(key, type=type)

    async def gone() -> None:
        store.fail_on = None  # reads of "b" fail from now on

    store.read = unreadable  # type: ignore[method-assign]
    store.fail_on, store.then = "c", gone
    with pytest.raises(ConnectionFailed) as caught:
        await store.write_many({"a": "new", "b": "new", "c": "new"})
    assert getattr(caught.value, "__notes__", []) == [
        "write_many: 1 key(s) could not be put back: ['b']"
    ]
    assert await store.inner.list() == ["b"]


async def test_keys_that_cannot_be_put_back_are_named_on_the_error() -> None:
    store = Primitives()

    async def gone() -> None:
        store.down = True

    store.fail_on, store.then = "c", gone
    with pytest.raises(ConnectionFailed) as caught:
        await store.write_many({"a": "new", "b": "new", "c": "new"})
    assert getattr(caught.value, "__notes__", []) == [
        "write_many: 2 key(s) could not be put back: ['a', 'b']"
    ]
