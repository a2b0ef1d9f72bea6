"""`microstd._engines.nats_kv.kv_names` reads every page of a stream's subjects.

nats-server returns at most 100 000 subjects per STREAM.INFO; a bucket that
large is too slow to fill here, so a stand-in client answers with small pages
the way the server does (``total``, ``offset``, ``limit``, the page's subjects).
"""

from __future__ import annotations

import json
from typing import Any

import nats.js.errors as jerr
import pytest

from microstd._engines import nats_kv


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
