"""Consul KV and Vault KV v2 against a local aiohttp server implementing their documented endpoints.

No Consul or Vault server can be installed here, so this server follows the
HTTP API documentation: Consul `GET /v1/kv/<prefix>?recurse` with
`X-Consul-Index` and blocking `?index=&wait=`; Vault
`GET /v1/<mount>/data/<path>` with `X-Vault-Token`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from microstd import config
from microstd.errors import ConfigError

TOKEN = "s.vault-token-123"


@dataclass
class FakeConsul:
    kv: dict[str, bytes] = field(default_factory=dict)
    index: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    blocking_calls: int = 0
    blocked: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, key: str, value: bytes) -> None:
        self.kv[key] = value
        self.index += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        prefix = request.match_info["key"]
        if "index" in request.query and int(request.query["index"]) >= self.index:
            self.blocking_calls += 1
            self.blocked.set()
            # A blocking query returns when the index moves past the one given (or at `wait`).
            wait = float(request.query.get("wait", "300s").rstrip("s"))
            with_timeout = asyncio.wait_for(self.changed.wait(), wait)
            with contextlib.suppress(asyncio.TimeoutError):
                await with_timeout
        headers = {"X-Consul-Index": str(self.index)}
        if request.headers.get("X-Consul-Token") != "consul-acl":
            return web.Response(status=403, text="ACL not found", headers=headers)
        entries = [
            {
                "Key": k,
                "Value": base64.b64encode(v).decode(),
                "ModifyIndex": self.index,
                "Flags": 0,
            }
            for k, v in sorted(self.kv.items())
            if k.startswith(prefix)
        ]
        if not entries:
            return web.Response(status=404, headers=headers)
        return web.json_response(entries, headers=headers)


@dataclass
class FakeVault:
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 1

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Vault-Token") != TOKEN:
            return web.json_response({"errors": ["permission denied"]}, status=403)
        path = f"{request.match_info['mount']}/{request.match_info['path']}"
        data = self.secrets.get(path)
        if data is None:
            return web.json_response({"errors": []}, status=404)
        return web.json_response(
            {
                "request_id": "r",
                "lease_duration": 0,
                "data": {"data": data, "metadata": {"version": self.version}},
            }
        )


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, FakeConsul, FakeVault]]:
    consul_state, vault_state = FakeConsul(), FakeVault()
    app = web.Application()
    app.router.add_get("/v1/kv/{key:.*}", consul_state.handle)
    app.router.add_get("/v1/{mount}/data/{path:.*}", vault_state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", consul_state, vault_state
    await runner.cleanup()


@dataclass
class DB:
    host: str
    password: str = ""
    port: int = 5432


@dataclass
class App:
    db: DB


async def test_consul_prefix_and_blocking_watch(servers: Any) -> None:
    url, consul_state, _ = servers
    consul_state.put("app/db/host", b"c1")
    consul_state.put("app/db/port", b"9000")
    consul_state.put("elsewhere/x", b"1")
    source = config.consul(url, "app/", token="consul-acl", wait="0.2s")
    cfg = await config.load_async(App, sources=[source])
    assert cfg.value == App(DB("c1", port=9000))

    changes = cfg.watch(debounce=0.01)
    task = asyncio.ensure_future(anext(changes))
    await asyncio.wait_for(consul_state.blocked.wait(), 10)
    consul_state.put("app/db/host", b"c2")
    change = await asyncio.wait_for(task, 10)
    await changes.aclose()
    assert change.paths == ("db.host",)
    assert cfg.value.db.host == "c2"


async def test_consul_errors(servers: Any) -> None:
    url, consul_state, _ = servers
    consul_state.put("app/x", b"1")
    with pytest.raises(ConfigError, match="HTTP 403"):
        await config.load_async(sources=[config.consul(url, "app/", token="wrong")])
    empty = await config.load_async(sources=[config.consul(url, "none/", token="consul-acl")])
    assert empty.value == {}


async def test_vault_values_are_secret_and_merge(servers: Any) -> None:
    url, _, vault_state = servers
    vault_state.secrets["secret/app"] = {"db": {"password": "vault-pw"}}
    source = config.vault(url, "app", token=TOKEN)
    assert TOKEN not in repr(source)
    cfg = await config.load_async(App, sources=[{"db": {"host": "h"}}, source])
    assert cfg.value.db.password == "vault-pw"
    assert isinstance(cfg.value.db.password, config.Secret)
    assert "vault-pw" not in repr(cfg.value)
    exp = cfg.explain("db.password")
    assert exp.source == "vault:secret/app"
    assert "vault-pw" not in str(exp)


async def test_vault_errors_never_show_the_token(servers: Any) -> None:
    url, _, vault_state = servers
    vault_state.secrets["secret/app"] = {"a": "b"}
    with pytest.raises(ConfigError, match="permission denied") as info:
        await config.load_async(sources=[config.vault(url, "app", token="bad-token-xyz")])
    assert "bad-token-xyz" not in str(info.value)
    with pytest.raises(ConfigError, match="no such secret"):
        await config.load_async(sources=[config.vault(url, "missing", token=TOKEN)])


async def test_vault_polls_for_changes(servers: Any) -> None:
    url, _, vault_state = servers
    vault_state.secrets["secret/app"] = {"db": {"host": "v1"}}
    cfg = await config.load_async(
        App, sources=[config.vault(url, "app", token=TOKEN, poll_interval=0.05)]
    )
    vault_state.secrets["secret/app"] = {"db": {"host": "v2"}}
    vault_state.version += 1
    changes = cfg.watch(debounce=0.01)
    change = await asyncio.wait_for(anext(changes), 10)
    await changes.aclose()
    assert change.paths == ("db.host",)
    assert cfg.value.db.host == "v2"
