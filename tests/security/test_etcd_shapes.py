"""etcd registry and locks do not assume the shape of the JSON the server sends:
malformed registry entries are skipped, malformed lock answers are a
ConnectionFailed (never KeyError / TypeError / AttributeError). A fake etcd
gateway on a loopback port plays the misbehaving server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from microstd.errors import ConnectionFailed
from microstd.registry.base import NodeRecord
from microstd.registry.etcd import EtcdRegistry
from microstd.sync.etcd import EtcdLocks

Answer = Callable[[str], object]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


GOOD = NodeRecord("svc", "1", ("A.b",), "n1", "127.0.0.1:1", (), None).encode()


@pytest.fixture
async def fake_etcd() -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A gateway answering each `/v3/...` path with `answers[path]` (JSON text)."""
    answers: dict[str, object] = {}

    async def handle(request: web.Request) -> web.Response:
        answer = answers.get(request.path, {})
        text = answer if isinstance(answer, str) else json.dumps(answer)
        return web.Response(text=text, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        await runner.cleanup()


MALFORMED_KVS: list[object] = [
    {"kvs": "not a list"},
    {"kvs": [1, None, "x", []]},
    {"kvs": [{"value": 5}, {"value": None}, {"value": ["x"]}]},
    {"kvs": [{"value": "!!!not base64!!!"}, {}]},
    {"kvs": [{"value": _b64(b"[1, 2]")}, {"value": _b64(b'{"node": 1}')}]},
    {"kvs": [{"value": _b64(b'{"name": 1, "node": {"id": "n", "address": "a"}}')}]},
    {
        "kvs": [
            {
                "value": _b64(
                    b'{"name": "svc", "endpoints": "ab", "node": {"id": "n", "address": "a"}}'
                )
            }
        ]
    },
    ["a", "list"],
    "null",
]


@pytest.mark.parametrize("answer", MALFORMED_KVS, ids=range(len(MALFORMED_KVS)))
async def test_registry_skips_malformed_entries(
    fake_etcd: tuple[str, dict[str, object]], answer: object
) -> None:
    base, answers = fake_etcd
    good = {"value": _b64(GOOD)}
    kvs = answer.get("kvs") if isinstance(answer, dict) else None
    answers["/v3/kv/range"] = {"kvs": [*kvs, good]} if isinstance(kvs, list) else answer
    registry = EtcdRegistry(base)
    try:
        if isinstance(answer, dict):
            records = await registry._load(None)
            expected = ["n1"] if isinstance(kvs, list) else []
            assert [r.node_id for r in records] == expected
        else:
            # An answer that is not a JSON object is the server's fault, as for locks:
            # not "no services".
            with pytest.raises(ConnectionFailed, match="not a JSON object"):
                await registry._load(None)
    finally:
        await registry.close()


LOCK_ANSWERS: list[dict[str, object]] = [
    {"/v3/lease/grant": {}},
    {"/v3/lease/grant": {"ID": ["x"], "TTL": "5"}},
    {"/v3/lease/grant": {"ID": "12", "TTL": "5"}, "/v3/kv/put": {"header": "x"}},
    {"/v3/lease/grant": {"ID": "12", "TTL": "5"}, "/v3/kv/put": {"header": {"revision": "r"}}},
    {"/v3/lease/grant": "[1]"},
]


@pytest.mark.parametrize("answers", LOCK_ANSWERS, ids=range(len(LOCK_ANSWERS)))
async def test_locks_report_malformed_answers(
    fake_etcd: tuple[str, dict[str, object]], answers: dict[str, object]
) -> None:
    base, served = fake_etcd
    served.update(answers)
    locks = EtcdLocks(base)
    try:
        with pytest.raises(ConnectionFailed, match="etcd"):
            await locks.acquire("job", ttl=5, wait=0)
    finally:
        await locks.close()


@pytest.mark.parametrize("answer", [{"kvs": "x"}, {"kvs": [None, 3]}, ["list"]])
async def test_no_leader_in_a_malformed_answer(
    fake_etcd: tuple[str, dict[str, object]], answer: object
) -> None:
    base, served = fake_etcd
    served["/v3/kv/range"] = answer
    locks = EtcdLocks(base)
    try:
        if isinstance(answer, list):
            with pytest.raises(ConnectionFailed, match="not a JSON object"):
                await locks.leader("job")
        else:
            assert await locks.leader("job") is None
    finally:
        await locks.close()


@pytest.mark.parametrize("value", [7, "%%", None])
async def test_a_garbled_leader_value_is_reported(
    fake_etcd: tuple[str, dict[str, object]], value: object
) -> None:
    base, served = fake_etcd
    served["/v3/kv/range"] = {"kvs": [{"value": value}]}
    locks = EtcdLocks(base)
    try:
        with pytest.raises(ConnectionFailed, match="base64"):
            await locks.leader("job")
    finally:
        await locks.close()


async def test_watch_stream_skips_what_is_not_a_watch_response() -> None:
    from microstd.sync._etcdapi import EtcdAPI

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        good = json.dumps(
            {"result": {"events": [{"type": "DELETE", "kv": {"key": "é"}}]}}, ensure_ascii=False
        )
        raw = b'[1, 2] "text" {"result": "not an object"} ' + good.encode()
        cut = raw.index("é".encode()) + 1  # split inside a two-byte character
        for piece in (raw[:cut], raw[cut:]):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v3/watch", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api = EtcdAPI(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        results = [r async for r in api.watch({"key": "eA=="})]
    finally:
        await api.close()
        await runner.cleanup()
    assert results == [{"events": [{"type": "DELETE", "kv": {"key": "é"}}]}]
