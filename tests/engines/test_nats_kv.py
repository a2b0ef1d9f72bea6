"""`microstd._engines.nats_kv.kv_names` reads every page of a stream's subjects.

nats-server returns at most 100 000 subjects per STREAM.INFO; a bucket that
large is too slow to fill here, so a stand-in client answers with small pages
the way the server does (``total``, ``offset``, ``limit``, the page's subjects).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.js.errors as jerr
import pytest

import microstd.store
from microstd._engines import nats_kv
from microstd.errors import ConnectionFailed
from microstd.store import Record
from microstd.store.nats import NatsStore


class _Reply:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


class _PagedServer:
    """Answers STREAM.INFO for KV_b with `subjects`, `limit` per page."""

    def __init__(self, subjects: list[str], limit: int) -> None:
        self.subjects = subjects
        self.limit = limit
        self.requests: list[dict[str, Any]] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> _Reply:
        assert subject == "$JS.API.STREAM.INFO.KV_b"
        req = json.loads(payload)
        self.requests.append(req)
        assert req["subjects_filter"] == "$KV.b.>"
        offset = req.get("offset", 0)
        page = self.subjects[offset : offset + self.limit]
        state = {"messages": len(self.subjects), "subjects": dict.fromkeys(page, 1)}
        return _Reply(
            {"state": state, "total": len(self.subjects), "offset": offset, "limit": self.limit}
        )


async def test_every_page_of_subjects_is_read() -> None:
    names = [f"k{i:03d}" for i in range(25)]
    server = _PagedServer([f"$KV.b.{n}" for n in reversed(names)], limit=10)
    got = await nats_kv.kv_names(server, "b", timeout=1.0)  # type: ignore[arg-type]
    assert got == names
    assert [r["offset"] for r in server.requests] == [0, 10, 20]


async def test_an_empty_bucket_is_one_request() -> None:
    server = _PagedServer([], limit=10)
    assert await nats_kv.kv_names(server, "b", timeout=1.0) == []  # type: ignore[arg-type]
    assert len(server.requests) == 1


async def test_a_missing_stream_is_nats_py_not_found() -> None:
    class Missing:
        async def request(self, subject: str, payload: bytes, timeout: float) -> _Reply:
            error = {"code": 404, "err_code": 10059, "description": "stream not found"}
            return _Reply({"error": error})

    with pytest.raises(jerr.NotFoundError):
        await nats_kv.kv_names(Missing(), "b", timeout=1.0)  # type: ignore[arg-type]


class _Reads:
    """Reads that wait until released; `fail` raises once the others are in flight."""

    def __init__(self, fail: str) -> None:
        self.fail = fail
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()

    async def read(self, key: str) -> str:
        self.started.append(key)
        if key == self.fail:
            await asyncio.sleep(0)  # the others of the batch have started by now
            raise ConnectionFailed("the connection was lost")
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        return key


async def test_a_failing_read_cancels_the_others_of_its_batch() -> None:
    reads = _Reads(fail="b")
    keys = ["a", "b", "c", "d", "e"]
    with pytest.raises(ConnectionFailed):
        await nats_kv.in_batches(reads.read, keys, 3)
    # The rest of the failed batch was cancelled before the call raised, and the
    # next batch never started: nothing is left running.
    assert reads.started == ["a", "b", "c"]
    assert sorted(reads.cancelled) == ["a", "c"]


async def test_reads_in_batches_keep_the_items_order() -> None:
    reads = _Reads(fail="")
    reads.release.set()
    assert await nats_kv.in_batches(reads.read, ["c", "a", "b"], 2) == ["c", "a", "b"]
    assert await nats_kv.in_batches(reads.read, [], 2) == []


async def test_a_failing_store_read_many_cancels_the_others() -> None:
    store = microstd.store.open("nats://127.0.0.1:1/b")
    assert isinstance(store, NatsStore)
    reads = _Reads(fail="k1")

    async def get(key: str) -> Record | None:
        await reads.read(key)
        return None

    store._get = get  # type: ignore[method-assign]
    with pytest.raises(ConnectionFailed):
        await store._get_many([f"k{i}" for i in range(40)])
    assert len(reads.started) == 32  # one batch of reads in flight, no more
    assert sorted(reads.cancelled) == sorted(k for k in reads.started if k != "k1")
