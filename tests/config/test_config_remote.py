"""Remote sources against real Redis, etcd and NATS servers started by the fixtures."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from redis import asyncio as aioredis

from microstd import config
from microstd.errors import ConfigError

pytestmark = pytest.mark.services


@dataclass
class DB:
    host: str
    port: int = 5432


@dataclass
class App:
    db: DB
    debug: bool = False


async def _first_change(cfg: config.Config, poke: Any, tries: int = 40) -> config.Change:
    queue: asyncio.Queue[config.Change] = asyncio.Queue()

    async def run() -> None:
        async for change in cfg.watch(debounce=0.02):
            queue.put_nowait(change)

    task = asyncio.create_task(run())
    try:
        for _ in range(tries):
            await poke()
            try:
                return await asyncio.wait_for(queue.get(), 0.5)
            except asyncio.TimeoutError:
                continue
        raise AssertionError("no change reported")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# The first `db.port` a probe writes; any value the tests load differs.
_PROBE_PORT = 10_000


async def _watch_started(
    queue: asyncio.Queue[config.Change], probe: Callable[[int], Awaitable[None]], tries: int = 40
) -> None:
    """Return once the watch that fills `queue` reports a change, so it has started.

    A test that stops the server must know the watch was up before, or it tests
    a watch that never started; nothing tells when it is, and on a loaded
    machine a fixed head start (`sleep(0.3)`) was not always enough. So
    `probe(port)` writes a new `db.port`, a new one each try, until the watch
    reports one; the change of the last probe is awaited, so a late change of an
    earlier one is taken off the queue too and the test reads only its own.
    """
    for port in range(_PROBE_PORT, _PROBE_PORT + tries):
        await probe(port)
        try:
            change = await asyncio.wait_for(queue.get(), 0.5)
        except asyncio.TimeoutError:
            continue
        while change.new.db.port != port:
            change = await asyncio.wait_for(queue.get(), 10)
        return
    raise AssertionError("the watch reported no probe")


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_redis_hash_with_typed_binding(redis_url: str, redis_client: Any) -> None:
    await redis_client.hset("cfg:app", mapping={"db.host": "r1", "db.port": "6000", "debug": "1"})
    cfg = await config.load_async(App, sources=[config.redis(redis_url, "cfg:app")])
    assert cfg.value == App(DB("r1", 6000), True)
    assert cfg.explain("db.host").source == "redis:cfg:app"


def test_redis_document_from_sync_load(redis_url: str) -> None:
    async def put() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.set("cfg:doc", json.dumps({"db": {"host": "d1"}}))
        await client.aclose()

    asyncio.run(put())
    cfg = config.load(App, sources=[config.redis(redis_url, "cfg:doc")])
    assert cfg.value == App(DB("d1"))


async def test_redis_bad_document_and_missing_key(redis_url: str, redis_client: Any) -> None:
    await redis_client.set("cfg:bad", '{"db": ')
    with pytest.raises(ConfigError, match=r"redis:cfg:bad:1:8: invalid JSON"):
        await config.load_async(sources=[config.redis(redis_url, "cfg:bad")])
    with pytest.raises(ConfigError, match="does not exist"):
        await config.load_async(sources=[config.redis(redis_url, "cfg:none")])
    cfg = await config.load_async(
        sources=[{"a": 1}, config.redis(redis_url, "cfg:none", optional=True)]
    )
    assert cfg.value == {"a": 1}


async def test_redis_watch_by_pubsub_channel(redis_url: str, redis_client: Any) -> None:
    await redis_client.hset("cfg:w", mapping={"db.host": "a"})
    cfg = await config.load_async(
        App, sources=[config.redis(redis_url, "cfg:w", channel="cfg-changed")]
    )

    async def poke() -> None:
        await redis_client.hset("cfg:w", "db.host", "b")
        await redis_client.publish("cfg-changed", "x")

    change = await _first_change(cfg, poke)
    assert change.paths == ("db.host",)
    assert cfg.value.db.host == "b"


async def test_redis_watch_by_keyspace_events(redis_url: str, redis_client: Any) -> None:
    await redis_client.config_set("notify-keyspace-events", "Kh")
    try:
        await redis_client.hset("cfg:k", mapping={"db.host": "a"})
        cfg = await config.load_async(App, sources=[config.redis(redis_url, "cfg:k")])

        async def poke() -> None:
            await redis_client.hset("cfg:k", "db.host", "k2")

        await _first_change(cfg, poke)
        assert cfg.value.db.host == "k2"
    finally:
        await redis_client.config_set("notify-keyspace-events", "")


async def test_redis_watch_polls_without_events(redis_url: str, redis_client: Any) -> None:
    await redis_client.set("cfg:p", '{"db": {"host": "p1"}}')
    cfg = await config.load_async(
        App, sources=[config.redis(redis_url, "cfg:p", poll_interval=0.05)]
    )

    async def poke() -> None:
        await redis_client.set("cfg:p", '{"db": {"host": "p2"}}')

    await _first_change(cfg, poke)
    assert cfg.value.db.host == "p2"


async def test_unreachable_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="redis:k: cannot read from Redis"):
        await config.load_async(sources=[config.redis("redis://127.0.0.1:1/0", "k")])


# --- etcd -------------------------------------------------------------------------------------


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def _etcd_put(base: str, key: str, value: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/v3/kv/put", json={"key": _b64(key), "value": _b64(value)}) as resp,
    ):
        assert resp.status == 200


async def test_etcd_prefix_fetch_and_native_watch(etcd_url: str) -> None:
    base = etcd_url.replace("etcd://", "http://")
    await _etcd_put(base, "/app/db/host", "e1")
    await _etcd_put(base, "/app/db/port", "7000")
    await _etcd_put(base, "/other/x", "no")
    cfg = await config.load_async(App, sources=[config.etcd(etcd_url, "/app/")])
    assert cfg.value == App(DB("e1", 7000))
    assert cfg.explain("db.port").source == "etcd:/app/"

    async def poke() -> None:
        await _etcd_put(base, "/app/db/host", "e2")

    change = await _first_change(cfg, poke)
    assert change.paths == ("db.host",)
    assert cfg.value.db.host == "e2"


def test_etcd_without_schema_parses_json_values(etcd_url: str) -> None:
    base = etcd_url.replace("etcd://", "http://")
    asyncio.run(_etcd_put(base, "/j/list", '["a", "b"]'))
    assert config.load(sources=[config.etcd(etcd_url, "/j/")]).value == {"list": ["a", "b"]}


# --- NATS JetStream KV -----------------------------------------------------------------------


async def test_nats_kv_bucket_fetch_and_watch(nats_url: str) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="cfgtest")
        await kv.put("db.host", b"n1")
        await kv.put("db.port", b"4000")
        await kv.put("gone", b"x")
        await kv.delete("gone")
        cfg = await config.load_async(App, sources=[config.nats(nats_url, "cfgtest")])
        assert cfg.value == App(DB("n1", 4000))
        raw = await config.load_async(sources=[config.nats(nats_url, "cfgtest")])
        assert raw.value == {"db": {"host": "n1", "port": 4000}}

        async def poke() -> None:
            await kv.put("db.host", b"n2")

        await _first_change(cfg, poke)
        assert cfg.value.db.host == "n2"
    finally:
        await nc.close()


async def test_nats_change_made_before_the_watch_starts_is_applied(nats_url: str) -> None:
    """A change made between the load and the start of the watch (or while a lost
    watch was being made again) is applied once the watch is up, with no further
    change needed: a new watch asks for one reload."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="cfgearly")
        await kv.put("db.host", b"e1")
        cfg = await config.load_async(App, sources=[config.nats(nats_url, "cfgearly")])
        assert cfg.value.db.host == "e1"
        await kv.put("db.host", b"e2")
        changes = cfg.watch(debounce=0.02)
        try:
            change = await asyncio.wait_for(anext(changes), 15)
        finally:
            await changes.aclose()  # type: ignore[attr-defined]
        assert change.paths == ("db.host",)
        assert cfg.value.db.host == "e2"
    finally:
        await nc.close()


async def test_nats_missing_bucket_is_a_config_error(nats_url: str) -> None:
    with pytest.raises(ConfigError, match="nats:nope"):
        await config.load_async(sources=[config.nats(nats_url, "nope")])


async def test_redis_watch_survives_a_server_restart(server_factory: Any) -> None:
    server = server_factory("redis")
    url = f"redis://127.0.0.1:{server.port}/0"
    client = aioredis.Redis.from_url(url)
    try:
        await client.hset("cfg:r", mapping={"db.host": "before"})
        cfg = await config.load_async(App, sources=[config.redis(url, "cfg:r", channel="cfg-r")])
        failed = asyncio.Event()
        cfg.on_error(lambda _err: failed.set())
        queue: asyncio.Queue[config.Change] = asyncio.Queue()

        async def run() -> None:
            async for change in cfg.watch(debounce=0.02):
                queue.put_nowait(change)

        async def probe(port: int) -> None:
            await client.hset("cfg:r", "db.port", str(port))
            await client.publish("cfg-r", "x")

        task = asyncio.create_task(run())
        await _watch_started(queue, probe)
        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(failed.wait(), 10)
        # The last good value stays while the server is down.
        assert cfg.value.db.host == "before"
        await asyncio.to_thread(server.start)
        await client.aclose()
        client = aioredis.Redis.from_url(url)
        await client.hset("cfg:r", mapping={"db.host": "after"})
        change = None
        for _ in range(60):
            await client.publish("cfg-r", "x")
            try:
                change = await asyncio.wait_for(queue.get(), 0.5)
                break
            except asyncio.TimeoutError:
                continue
        assert change is not None
        assert cfg.value.db.host == "after"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await client.aclose()


async def _watch_through_restart(
    cfg: config.Config,
    server: Any,
    probe: Callable[[int], Awaitable[None]],
    update: Any,
    check: Any,
) -> None:
    """Watch (started: `_watch_started` with `probe`), stop the server, see the error
    reported, restart it, update, see the change."""
    failed = asyncio.Event()
    cfg.on_error(lambda _err: failed.set())
    queue: asyncio.Queue[config.Change] = asyncio.Queue()

    async def run() -> None:
        async for change in cfg.watch(debounce=0.02):
            queue.put_nowait(change)

    task = asyncio.create_task(run())
    try:
        await _watch_started(queue, probe)
        await asyncio.to_thread(server.stop)
        await asyncio.wait_for(failed.wait(), 15)
        await asyncio.to_thread(server.start)
        for _ in range(60):
            await update()
            try:
                await asyncio.wait_for(queue.get(), 0.5)
            except asyncio.TimeoutError:
                continue
            if check():
                return
        raise AssertionError("no change after the restart")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_etcd_watch_survives_a_server_restart(server_factory: Any) -> None:
    server = server_factory("etcd")
    url = f"etcd://127.0.0.1:{server.port}"
    base = f"http://127.0.0.1:{server.port}"
    await _etcd_put(base, "/r/db/host", "before")
    cfg = await config.load_async(App, sources=[config.etcd(url, "/r/")])

    async def probe(port: int) -> None:
        await _etcd_put(base, "/r/db/port", str(port))

    async def update() -> None:
        await _etcd_put(base, "/r/db/host", "after")

    await _watch_through_restart(cfg, server, probe, update, lambda: cfg.value.db.host == "after")


async def test_nats_watch_survives_a_server_restart(server_factory: Any) -> None:
    import nats

    server = server_factory("nats")
    url = f"nats://127.0.0.1:{server.port}"
    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="restart")
    await kv.put("db.host", b"before")
    await nc.close()
    cfg = await config.load_async(App, sources=[config.nats(url, "restart")])

    async def put(key: str, value: bytes) -> None:
        # A client of its own each time: the server is stopped and started in between.
        client = await nats.connect(url)
        try:
            bucket = await client.jetstream().key_value("restart")
            await bucket.put(key, value)
        finally:
            await client.close()

    async def probe(port: int) -> None:
        await put("db.port", str(port).encode())

    async def update() -> None:
        await put("db.host", b"after")

    await _watch_through_restart(cfg, server, probe, update, lambda: cfg.value.db.host == "after")
