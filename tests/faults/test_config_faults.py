"""Remote config sources under server faults: Redis (hash + channel), etcd, NATS KV.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import FAST, FAST_NATS, HANG, RECOVER, wait_until
from microstd import config
from microstd.errors import ConfigError

pytestmark = pytest.mark.services

KINDS = ["redis", "etcd", "nats"]


@dataclass
class DB:
    host: str


@dataclass
class App:
    db: DB


async def _set(kind: str, port: int, host: str) -> None:
    """Write `db.host` straight to the server (not through the source under test)."""
    if kind == "redis":
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        try:
            await client.hset("cfg", mapping={"db.host": host})
            await client.publish("cfg-changed", "x")
        finally:
            await client.aclose()
    elif kind == "etcd":
        body = {"key": _b64("/cfg/db/host"), "value": _b64(host)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/v3/kv/put", json=body) as resp,
        ):
            assert resp.status == 200
    else:
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            js = nc.jetstream()
            try:
                kv = await js.key_value("cfg")
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(bucket="cfg")
            await kv.put("db.host", host.encode())
        finally:
            await nc.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _source(kind: str, port: int) -> config.Source:
    if kind == "redis":
        return config.redis(f"redis://127.0.0.1:{port}/0", "cfg", channel="cfg-changed", **FAST)
    if kind == "etcd":
        return config.etcd(f"etcd://127.0.0.1:{port}", "/cfg/", **FAST)
    return config.nats(f"nats://127.0.0.1:{port}", "cfg", **FAST_NATS)


async def _fetch_fails_in_time(source: config.Source) -> ConfigError:
    try:
        await asyncio.wait_for(source.fetch(), HANG)
    except ConfigError as exc:
        return exc
    except asyncio.TimeoutError:
        raise AssertionError(f"hung: no result and no error within {HANG}s") from None
    raise AssertionError("expected ConfigError, but the read succeeded")


class Watching:
    """A running `cfg.watch()`, with the errors it reported."""

    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        self.errors: list[BaseException] = []
        cfg.on_error(self.errors.append)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for _change in self.cfg.watch(debounce=0.02):
            pass

    def host(self) -> str:
        return str(self.cfg.value.db.host)

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_fails_in_time_while_the_server_is_frozen(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server frozen: reading a source raises ConfigError within the engine's
    timeouts, never hangs; after the thaw it reads again."""
    server = servers(kind)
    await _set(kind, server.port, "before")
    source = _source(kind, server.port)
    assert (await source.fetch())["db"]["host"] == "before"
    server.pause()
    try:
        await _fetch_fails_in_time(source)
    finally:
        server.resume()
    await wait_until_read(source, "before")


async def wait_until_read(source: config.Source, host: str) -> None:
    deadline = asyncio.get_running_loop().time() + RECOVER
    while True:
        try:
            tree: Any = await asyncio.wait_for(source.fetch(), HANG)
            if tree["db"]["host"] == host:
                return
        except ConfigError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the source did not read {host!r} again")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", KINDS)
async def test_hot_reload_resumes_after_a_kill(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed under a hot-reloading config: the loss is reported to
    `on_error`, the last good value stays, and a change made after the restart
    is applied without reloading by hand."""
    server = servers(kind)
    await _set(kind, server.port, "before")
    cfg = await config.load_async(App, sources=[_source(kind, server.port)])
    watching = Watching(cfg)
    try:
        server.kill()
        await wait_until(lambda: bool(watching.errors))
        assert watching.host() == "before"
        server.start()
        for attempt in range(int(RECOVER / 0.5)):
            await _set(kind, server.port, f"after{attempt}")
            try:
                await wait_until(lambda: watching.host().startswith("after"), 0.5)
                break
            except AssertionError:
                continue
        assert watching.host().startswith("after")
    finally:
        await watching.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_change_made_during_a_stall_is_applied(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """The source's connection stalls (its liveness check fails, reported to
    `on_error`) while the value changes on the server: once traffic flows again,
    the change is applied, with no further change needed to trigger it."""
    server = servers(kind)
    proxy = proxies(server)
    await _set(kind, server.port, "before")
    cfg = await config.load_async(App, sources=[_source(kind, proxy.port)])
    watching = Watching(cfg)
    try:
        proxy.stall()
        try:
            await _set(kind, server.port, "during")
            await wait_until(lambda: bool(watching.errors))
            assert watching.host() == "before"
        finally:
            proxy.resume()
        await wait_until(lambda: watching.host() == "during")
    finally:
        await watching.stop()
