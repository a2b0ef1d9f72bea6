"""s3:// specifics: ETag revisions, preconditions, emulated TTL, no watch, server loss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import boto3
import pytest

import microstd.store
from _servers import ServerProcess
from microstd.errors import ConnectionFailed, NotFound, NotSupported
from microstd.store import Store

pytestmark = pytest.mark.services

CREDS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def _boto(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDS)


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[Store]:
    made = microstd.store.open(
        f"s3://specifics?endpoint_url={s3_endpoint}&create_bucket=true", **CREDS
    )
    async with made:
        yield made


async def test_revision_is_the_etag(store: Store, s3_endpoint: str) -> None:
    rev = await store.write("dir/k", {"a": 1}, ttl=60)
    head = _boto(s3_endpoint).head_object(Bucket="specifics", Key="dir/k")  # type: ignore[attr-defined]
    assert head["ETag"] == rev
    assert float(head["Metadata"]["microstd-expires-at"]) > time.time()
    # Same value again: a new envelope nonce, so a new ETag.
    assert await store.write("dir/k", {"a": 1}) != rev


async def test_watch_is_not_supported(store: Store) -> None:
    with pytest.raises(NotSupported, match="S3"):
        store.watch()


async def test_foreign_objects_are_decode_errors_not_crashes(
    store: Store, s3_endpoint: str
) -> None:
    from microstd.errors import DecodeError

    _boto(s3_endpoint).put_object(Bucket="specifics", Key="foreign", Body=b"plain")  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        await store.read("foreign")


async def test_missing_bucket_without_create(s3_endpoint: str) -> None:
    store = microstd.store.open(f"s3://no-such-bucket?endpoint_url={s3_endpoint}", **CREDS)
    with pytest.raises(NotFound, match="no-such-bucket"):
        await store.connect()
    await store.close()


async def test_server_gone_then_back(server_factory: Callable[[str], ServerProcess]) -> None:
    server = server_factory("s3")
    endpoint = f"http://127.0.0.1:{server.port}"
    url = f"s3://restart?endpoint_url={endpoint}&create_bucket=1&timeout=2"
    async with microstd.store.open(url, **CREDS) as store:
        await store.write("k", 1)
        server.stop()
        with pytest.raises(ConnectionFailed):
            await store.read("k")
        with pytest.raises(ConnectionFailed):
            await store.list()
        server.start()
        # moto keeps nothing across restarts: recreate the bucket as a real S3 would still have it.
        _boto(endpoint).create_bucket(Bucket="restart")  # type: ignore[attr-defined]
        with pytest.raises(NotFound):
            await store.read("k")
        await store.write("k", 2)
        assert (await store.read("k")).value == 2


def test_repr_hides_credentials(s3_endpoint: str) -> None:
    store = microstd.store.open(
        f"s3://b?endpoint_url={s3_endpoint}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="sekrit",
    )
    assert "sekrit" not in repr(store)
    assert "AKIDEXAMPLE" not in repr(store)
    asyncio.run(store.close())
