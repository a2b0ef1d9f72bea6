"""Records someone else wrote into a store's backend: reading one back raises a
DecodeError naming the key (never KeyError / TypeError / struct.error), and a
watch skips malformed events instead of ending."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator

import pytest

import microstd.store
from microstd.errors import DecodeError
from microstd.store import Event, Store

S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def _assert_names_key(info: pytest.ExceptionInfo[DecodeError], key: str) -> None:
    assert f"stored record {key!r} is malformed" in info.value.message


async def _next_event(events: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(events.__anext__(), 10)


# -- file:// (SQLite) ---------------------------------------------------------

FILE_GARBAGE = [
    ("value", "UPDATE records SET value = X'c1c1' WHERE key = ?"),
    ("value", "UPDATE records SET value = 'text, not bytes' WHERE key = ?"),
    ("metadata", "UPDATE records SET metadata = '{not json' WHERE key = ?"),
    ("metadata", "UPDATE records SET metadata = '[1, 2]' WHERE key = ?"),
    ("revision", "UPDATE records SET revision = 'abc' WHERE key = ?"),
    ("expiry", "UPDATE records SET expires_at = 'soon' WHERE key = ?"),
]


@pytest.mark.parametrize(("part", "sql"), FILE_GARBAGE)
async def test_file_store_garbage_row(tmp_path: object, part: str, sql: str) -> None:
    path = f"{tmp_path}/store.db"
    async with microstd.store.open(f"file://{path}") as store:
        await store.write("k", {"a": 1}, ttl=3600)
        with sqlite3.connect(path) as db:
            db.execute(sql, ("k",))
        with pytest.raises(DecodeError) as info:
            await store.read("k")
        _assert_names_key(info, "k")
        with pytest.raises(DecodeError):
            await store.read_many(["k"])
        assert await store.list() == ["k"]


# -- redis:// -------------------------------------------------------------------


@pytest.mark.services
async def test_redis_store_garbage_hash(redis_url: str) -> None:
    import redis.asyncio as aioredis

    prefix = f"sec:{uuid.uuid4().hex[:8]}:"
    raw = aioredis.Redis.from_url(redis_url)
    async with microstd.store.open(redis_url, prefix=prefix) as store:
        cases = {
            "bad-value": {b"v": b"\xc1", b"r": b"1"},
            "bad-meta": {b"v": b"\x01", b"m": b"{", b"r": b"1"},
            "bad-rev": {b"v": b"\x01", b"r": b"one"},
            "no-rev": {b"v": b"\x01"},
            "bad-expiry": {b"v": b"\x01", b"r": b"1", b"e": b"nan"},
        }
        for key, fields in cases.items():
            await raw.hset(f"{prefix}d:{key}", mapping=fields)  # type: ignore[arg-type]
        await raw.set(f"{prefix}d:not-a-hash", b"plain string")
        for key in [*cases, "not-a-hash"]:
            with pytest.raises(DecodeError) as info:
                await store.read(key)
            _assert_names_key(info, key)
            with pytest.raises(DecodeError):
                await store.read_many(["fine", key])
    await raw.aclose()


@pytest.mark.services
async def test_redis_watch_skips_malformed_events(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    prefix = f"sec:{uuid.uuid4().hex[:8]}:"
    raw = aioredis.Redis.from_url(redis_url)
    async with microstd.store.open(redis_url, prefix=prefix) as store:
        events = store.watch()
        await store.write("first", 1)
        assert (await _next_event(events)).key == "first"
        payloads = [b"garbage", b"p1,3,0,,k", b"p1,1,0,,k\xc1", b"pX,1,2,,kzz\x01", b"p1,-5,0,,k"]
        with caplog.at_level(logging.WARNING, "microstd"):
            for payload in payloads:
                await raw.publish(f"{prefix}events", payload)
            await store.write("after", 2)
            event = await _next_event(events)
        assert (event.key, event.record and event.record.value) == ("after", 2)
        skipped = [r for r in caplog.records if "skipped a malformed event" in r.getMessage()]
        assert len(skipped) == len(payloads)
        assert not any(b"garbage".decode() in r.getMessage() for r in skipped)
        await events.aclose()  # type: ignore[attr-defined]
    await raw.aclose()


# -- nats:// (JetStream KV) -------------------------------------------------------


@pytest.mark.services
async def test_nats_store_garbage_entries(nats_url: str) -> None:
    import nats

    bucket = f"sec{uuid.uuid4().hex[:8]}"
    async with microstd.store.open(f"{nats_url}?bucket={bucket}") as store:
        events = store.watch()
        await store.write("first", 1)
        assert (await _next_event(events)).key == "first"
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        meta = base64.urlsafe_b64encode(b"[1]").decode()
        cases = {
            "bad-value": (b"\xc1", {}),
            "bad-meta-b64": (b"\x01", {"Microstd-Meta": "!!!"}),
            "bad-meta": (b"\x01", {"Microstd-Meta": meta}),
            "bad-expiry": (b"\x01", {"Microstd-Expires-At": "tomorrow"}),
        }
        for key, (data, headers) in cases.items():
            await js.publish(f"$KV.{bucket}.{key}", data, headers=headers or None)
        await js.publish(f"$KV.{bucket}.bad_zzescape", b"\x01")
        await nc.close()
        for key in cases:
            with pytest.raises(DecodeError) as info:
                await store.read(key)
            assert repr(key) in info.value.message
        # The foreign name is skipped; the malformed records are listed (they exist).
        assert sorted(await store.list()) == sorted([*cases, "first"])
        await store.write("after", 2)
        assert (await _next_event(events)).key == "after"
        await events.aclose()  # type: ignore[attr-defined]


# -- s3:// ------------------------------------------------------------------------

S3_GARBAGE = [
    b"not a record at all",
    b"MSTD\x01",
    b"MSTD\x01\xff\xff\xff\xff{}",
    b"MSTD\x01\x00\x00\x00\x02[]",
    b'MSTD\x01\x00\x00\x00\x0d{"m": [1, 2]}\x01',
    b'MSTD\x01\x00\x00\x00\x0b{"e": "x"}\x01',
    b"MSTD\x01\x00\x00\x00\x02{}\xc1",
]


@pytest.mark.services
@pytest.mark.parametrize("body", S3_GARBAGE)
async def test_s3_store_garbage_object(s3_endpoint: str, body: bytes) -> None:
    import boto3

    bucket = f"sec{uuid.uuid4().hex[:12]}"
    url = f"s3://{bucket}?endpoint_url={s3_endpoint}"
    store: Store = microstd.store.open(url, create_bucket=True, **S3_CREDENTIALS)
    async with store:
        await store.write("ok", 1)
        client = boto3.client(
            "s3", endpoint_url=s3_endpoint, region_name="us-east-1", **S3_CREDENTIALS
        )
        client.put_object(Bucket=bucket, Key="k", Body=body)
        with pytest.raises(DecodeError) as info:
            await store.read("k")
        _assert_names_key(info, "k")
