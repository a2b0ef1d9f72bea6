"""nats:// specifics: key escaping, KV interop, emulated TTL, server loss and return."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
import pytest

import microstd.store
from _servers import ServerProcess, free_port
from microstd.errors import ConnectionFailed
from microstd.store.nats import decode_key, encode_key

pytestmark = pytest.mark.services

ODD_KEYS = ["a.b", "a..b", ".", "*", ">", "a b", "é/ü", "_5F", "x=y", "tab\tnew\nline", "😀"]


def test_key_escaping_is_reversible_and_kv_safe() -> None:
    for key in [*ODD_KEYS, "plain/key-1"]:
        name = encode_key(key)
        assert decode_key(name) == key
        assert all(c.isascii() and (c.isalnum() or c in "-/_") for c in name), name
    assert encode_key("plain/key-1") == "plain/key-1"
    assert encode_key("a.b") == "a_2Eb"
    # Escaping is per character, so a key prefix stays a prefix of the stored name.
    assert encode_key("a.b.c").startswith(encode_key("a.b"))


async def test_odd_keys_round_trip_and_list(nats_url: str) -> None:
    async with microstd.store.open(f"{nats_url}?bucket=odd") as store:
        for key in ODD_KEYS:
            await store.write(key, key)
        for key in ODD_KEYS:
            assert (await store.read(key)).value == key
        assert await store.list() == sorted(ODD_KEYS)
        assert await store.list(prefix="a.") == ["a..b", "a.b"]


async def test_entries_are_plain_kv_entries(nats_url: str) -> None:
    async with microstd.store.open(f"{nats_url}?bucket=interop", codec="text/plain") as store:
        rev = await store.write("greeting.en", "hello")
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value("interop")
            entry = await kv.get("greeting_2Een")
            assert (entry.value, entry.revision) == (b"hello", rev)
            await kv.put("from_2Eelsewhere", b"hi")
        finally:
            await nc.close()
        assert (await store.read("from.elsewhere")).value == "hi"


async def test_expired_entries_are_deleted_by_the_writer(nats_url: str) -> None:
    async with microstd.store.open(f"{nats_url}?bucket=sweep") as store:
        await store.write("brief", 1, ttl=0.2)
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value("sweep")
            deadline = time.monotonic() + 10
            while True:
                try:
                    await kv.get("brief")
                except nats.js.errors.KeyNotFoundError:
                    break  # the delete marker is in place
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        finally:
            await nc.close()


async def _eventually(call: Callable[[], object], seconds: float = 15.0) -> object:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()  # type: ignore[misc]
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_server_gone_then_back(server_factory: Callable[[str], ServerProcess]) -> None:
    server = server_factory("nats")
    url = f"nats://127.0.0.1:{server.port}?bucket=restart"
    async with microstd.store.open(url, timeout=1.0) as store:
        await store.write("k", 1)
        server.stop()
        with pytest.raises(ConnectionFailed):
            await store.read("k")
        with pytest.raises(ConnectionFailed):
            await store.write("k", 2)
        server.start()
        # JetStream keeps its data on disk: the record is still there.
        record = await _eventually(lambda: store.read("k"))
        assert record.value == 1  # type: ignore[attr-defined]
        await store.write("k", 3)
        assert (await store.read("k")).value == 3


async def test_unreachable_server_on_connect() -> None:
    store = microstd.store.open(f"nats://127.0.0.1:{free_port()}?bucket=x", timeout=0.5)
    with pytest.raises(ConnectionFailed):
        await store.connect()
    await store.close()


def test_bad_bucket_and_redacted_repr() -> None:
    with pytest.raises(ValueError):
        microstd.store.open("nats://127.0.0.1:1?bucket=has.dot")
    store = microstd.store.open("nats://user:s3cret@127.0.0.1:1?bucket=b")
    assert "s3cret" not in repr(store)
