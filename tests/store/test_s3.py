"""s3:// specifics: ETag revisions, preconditions, emulated TTL, no watch, server loss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import boto3
import pytest

import microstd.store
from _servers import ServerProcess
from faults._proxy import FaultProxy
from microstd.errors import Conflict, ConnectionFailed, NotFound, NotSupported
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


@pytest.mark.parametrize("condition", ["if_revision", "if_absent"])
async def test_a_conditional_write_whose_reply_was_lost_is_not_a_conflict(
    s3_proc: ServerProcess, condition: str
) -> None:
    # The PUT reaches the server and is applied, its reply is lost; botocore
    # sends it again and that attempt fails its precondition (the first one
    # changed the object). Reporting that as Conflict would say "not applied"
    # of a write that was: a compare-and-set loop would then apply it twice.
    with FaultProxy(s3_proc.port) as proxy:
        url = f"s3://lostreply?endpoint_url=http://127.0.0.1:{proxy.port}&create_bucket=1"
        async with microstd.store.open(url, **CREDS) as store:
            key = f"k-{condition}"
            rev = await store.write(key, 1)
            if condition == "if_absent":
                await store.delete(key)
            proxy.lose_reply_to(b"PUT ")
            if condition == "if_revision":
                new = await store.write(key, 2, if_revision=rev)
            else:
                new = await store.write(key, 2, if_absent=True)
            assert proxy.lost_replies == 1
            rec = await store.read(key)
            assert (rec.value, rec.revision) == (2, new)
            with pytest.raises(Conflict):
                await store.write(key, 3, if_revision=rev)


async def test_a_lost_reply_then_an_overwrite_is_ambiguous_not_a_conflict(
    s3_proc: ServerProcess,
) -> None:
    # Applied, reply lost, then someone else wrote before botocore's retry: the
    # store cannot tell this from "never applied", so it must not say Conflict.
    with FaultProxy(s3_proc.port) as proxy:
        url = f"s3://lostreply2?endpoint_url=http://127.0.0.1:{proxy.port}&create_bucket=1"
        async with microstd.store.open(url, **CREDS) as store:
            rev = await store.write("k", 1)
            boto = _boto(f"http://127.0.0.1:{s3_proc.port}")
            proxy.lose_reply_to(
                b"PUT ",
                then=lambda: boto.put_object(Bucket="lostreply2", Key="k", Body=b"other"),  # type: ignore[attr-defined]
            )
            with pytest.raises(ConnectionFailed, match="ambiguous"):
                await store.write("k", 2, if_revision=rev)
            assert proxy.lost_replies == 1
            # The other write stands: nothing was applied twice.
            other = boto.get_object(Bucket="lostreply2", Key="k")  # type: ignore[attr-defined]
            assert other["Body"].read() == b"other"


def test_repr_hides_credentials(s3_endpoint: str) -> None:
    store = microstd.store.open(
        f"s3://b?endpoint_url={s3_endpoint}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="sekrit",
    )
    assert "sekrit" not in repr(store)
    assert "AKIDEXAMPLE" not in repr(store)
    asyncio.run(store.close())
