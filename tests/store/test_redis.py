"""redis:// specifics: server loss and return, namespacing, glob-safe listing, PX TTLs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

import microstd.store
from _servers import ServerProcess
from microstd.errors import ConnectionFailed

pytestmark = pytest.mark.services


async def _eventually(call: Callable[[], object], seconds: float = 10.0) -> object:
    """The result of `call()` once the server answers; only ConnectionFailed is retried."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()  # type: ignore[misc]
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_server_gone_then_back(server_factory: Callable[[str], ServerProcess]) -> None:
    server = server_factory("redis")
    async with microstd.store.open(f"redis://127.0.0.1:{server.port}/0") as store:
        await store.write("k", 1)
        server.stop()
        with pytest.raises(ConnectionFailed):
            await store.read("k")
        with pytest.raises(ConnectionFailed):
            await store.write("k", 2)
        with pytest.raises(ConnectionFailed):
            await store.list()
        server.start()
        # The test server keeps nothing on disk, so the store starts empty again.
        assert isinstance(await _eventually(lambda: store.write("k", 3)), int)
        assert (await store.read("k")).value == 3


def test_sync_server_gone(server_factory: Callable[[str], ServerProcess]) -> None:
    server = server_factory("redis")
    with microstd.store.open_sync(f"redis://127.0.0.1:{server.port}/0") as store:
        store.write("k", 1)
        server.stop()
        with pytest.raises(ConnectionFailed):
            store.read("k")
        server.start()
        store.write("k", 2)
        assert store.read("k").value == 2


async def test_unreachable_server_on_connect() -> None:
    from _servers import free_port

    store = microstd.store.open(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionFailed):
        await store.connect()
    await store.close()


async def test_prefixes_isolate_stores(redis_url: str) -> None:
    async with (
        microstd.store.open(redis_url, prefix="one:") as one,
        microstd.store.open(f"{redis_url}?prefix=two:") as two,
    ):
        await one.write("k", 1)
        await two.write("k", 2)
        assert (await one.read("k")).value == 1
        assert (await two.read("k")).value == 2
        assert await one.list() == ["k"]
        await one.delete("k")
        assert await two.exists("k")
        await two.delete("k")


async def test_glob_characters_in_keys_list_literally(redis_url: str) -> None:
    keys = ["a*b", "a?c", "[x]", "a\\d", "a*", "ab"]
    async with microstd.store.open(redis_url, prefix="glob:") as store:
        for key in keys:
            await store.write(key, key)
        assert await store.list(prefix="a*") == ["a*", "a*b"]
        assert await store.list(prefix="[x") == ["[x]"]
        assert await store.list(prefix="a\\") == ["a\\d"]
        assert await store.list() == sorted(keys)
        assert await store.delete_many(keys) == len(keys)


async def test_layout_and_px_ttl(redis_url: str) -> None:
    async with microstd.store.open(redis_url, prefix="lay:") as store:
        rev = await store.write("k", b"v", ttl=30, metadata={"m": "1"})
        raw = aioredis.Redis.from_url(redis_url)
        try:
            fields = await raw.hgetall(b"lay:d:k")
            assert fields[b"r"] == str(rev).encode()
            assert fields[b"m"] == b'{"m": "1"}'
            assert 0 < await raw.pttl(b"lay:d:k") <= 30_000
            await store.write("k", b"v")
            assert await raw.pttl(b"lay:d:k") == -1  # no TTL any more
        finally:
            await raw.aclose()
        await store.delete("k")


def test_repr_hides_password() -> None:
    store = microstd.store.open("redis://user:s3cret@127.0.0.1:1/0?prefix=p:")
    assert "s3cret" not in repr(store)
    assert "***" in repr(store)


async def test_write_many_revisions_increase_like_single_writes(redis_url: str) -> None:
    """A batch's revisions are consecutive, above every earlier one and below every
    later one, also after the counter is lost (seeded from the server's clock)."""
    async with microstd.store.open(redis_url, prefix="many:") as store:
        first = await store.write("a", 0)
        revs = await store.write_many({f"k{i}": i for i in range(5)}, ttl=30)
        in_order = [revs[f"k{i}"] for i in range(5)]
        assert in_order[0] > first
        assert in_order == list(range(in_order[0], in_order[0] + 5))
        assert await store.write("b", 1) > in_order[-1]
        raw = aioredis.Redis.from_url(redis_url)
        try:
            assert 0 < await raw.pttl(b"many:d:k0") <= 30_000
            await raw.delete(b"many:rev")  # a restart that lost the counter
        finally:
            await raw.aclose()
        again = await store.write_many({"k0": "x", "k1": "y"})
        assert min(again.values()) > in_order[-1]
        await store.delete_many([*revs, "a", "b"])
