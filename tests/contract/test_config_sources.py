"""The source contract: every kind of source, holding the same settings, loads the same way.

Each maker stores `db.host = "h"`, `db.port = 5` and `tags = ["a", "b"]` in
its own medium (a file, the environment, a real Redis / etcd / NATS server)
and returns the source; the checks below must hold for all of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from microstd import config

DOC = {"db": {"host": "h", "port": 5}, "tags": ["a", "b"]}


@dataclass
class DB:
    host: str = ""
    port: int = 0


@dataclass
class App:
    db: DB = field(default_factory=DB)
    tags: list[str] = field(default_factory=list)


Maker = Callable[[Path, pytest.FixtureRequest], config.Source]


def _json_file(tmp: Path, _: pytest.FixtureRequest) -> config.Source:
    (tmp / "c.json").write_text(json.dumps(DOC))
    return config.file(tmp / "c.json")


def _yaml_file(tmp: Path, _: pytest.FixtureRequest) -> config.Source:
    (tmp / "c.yaml").write_text("db:\n  host: h\n  port: 5\ntags: [a, b]\n")
    return config.file(tmp / "c.yaml")


def _toml_file(tmp: Path, _: pytest.FixtureRequest) -> config.Source:
    (tmp / "c.toml").write_text('tags = ["a", "b"]\n[db]\nhost = "h"\nport = 5\n')
    return config.file(tmp / "c.toml")


def _dotenv(tmp: Path, _: pytest.FixtureRequest) -> config.Source:
    (tmp / ".env").write_text('DB__HOST=h\nDB__PORT=5\nTAGS=\'["a", "b"]\'\n')
    return config.dotenv(tmp / ".env")


def _env(_: Path, __: pytest.FixtureRequest) -> config.Source:
    return config.env("C_", environ={"C_DB__HOST": "h", "C_DB__PORT": "5", "C_TAGS": '["a","b"]'})


def _args(_: Path, __: pytest.FixtureRequest) -> config.Source:
    return config.args(["--db.host=h", "--db-port", "5", '--tags=["a","b"]'])


def _mapping(_: Path, __: pytest.FixtureRequest) -> config.Source:
    return config.mapping(DOC, name="m")


def _secrets(tmp: Path, _: pytest.FixtureRequest) -> config.Source:
    d = tmp / "secrets"
    d.mkdir()
    (d / "db__host").write_text("h\n")
    (d / "db__port").write_text("5\n")
    (d / "tags").write_text('["a","b"]\n')
    return config.secrets_dir(d)


def _redis_hash(_: Path, request: pytest.FixtureRequest) -> config.Source:
    from redis import asyncio as aioredis

    url = request.getfixturevalue("redis_url")

    async def put() -> None:
        client = aioredis.Redis.from_url(url)
        await client.delete("contract:h")
        await client.hset(
            "contract:h", mapping={"db.host": "h", "db.port": "5", "tags": '["a","b"]'}
        )
        await client.aclose()

    asyncio.run(put())
    return config.redis(url, "contract:h")


def _redis_doc(_: Path, request: pytest.FixtureRequest) -> config.Source:
    from redis import asyncio as aioredis

    url = request.getfixturevalue("redis_url")

    async def put() -> None:
        client = aioredis.Redis.from_url(url)
        await client.set("contract:d", json.dumps(DOC))
        await client.aclose()

    asyncio.run(put())
    return config.redis(url, "contract:d")


def _etcd(_: Path, request: pytest.FixtureRequest) -> config.Source:
    import aiohttp

    url = request.getfixturevalue("etcd_url")
    base = url.replace("etcd://", "http://")

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    async def put() -> None:
        async with aiohttp.ClientSession() as session:
            for key, value in [("db/host", "h"), ("db/port", "5"), ("tags", '["a","b"]')]:
                body = {"key": b64(f"/contract/{key}"), "value": b64(value)}
                async with session.post(f"{base}/v3/kv/put", json=body) as resp:
                    assert resp.status == 200

    asyncio.run(put())
    return config.etcd(url, "/contract/")


def _nats(_: Path, request: pytest.FixtureRequest) -> config.Source:
    import nats

    url = request.getfixturevalue("nats_url")

    async def put() -> None:
        nc = await nats.connect(url)
        kv = await nc.jetstream().create_key_value(bucket="contract")
        await kv.put("db.host", b"h")
        await kv.put("db.port", b"5")
        await kv.put("tags", b'["a","b"]')
        await nc.close()

    asyncio.run(put())
    return config.nats(url, "contract")


def _postgres(_: Path, request: pytest.FixtureRequest) -> config.Source:
    import asyncpg

    url = request.getfixturevalue("postgres_url")
    table = f"c{uuid.uuid4().hex[:10]}"
    source = config.postgres(url, table=table, prefix="app.")

    async def put() -> None:
        await source.fetch()  # creates the table on first use
        conn = await asyncpg.connect(url)
        rows = [("app.db.host", "h"), ("app.db.port", "5"), ("app.tags", '["a","b"]')]
        await conn.executemany(f"INSERT INTO {table} (key, value) VALUES ($1, $2)", rows)
        await conn.execute(f"INSERT INTO {table} (key, value) VALUES ('other.x', '1')")
        await conn.close()

    asyncio.run(put())
    return source


MAKERS: dict[str, Maker] = {
    "mapping": _mapping,
    "json": _json_file,
    "yaml": _yaml_file,
    "toml": _toml_file,
    "dotenv": _dotenv,
    "env": _env,
    "args": _args,
    "secrets_dir": _secrets,
    "redis-hash": _redis_hash,
    "redis-document": _redis_doc,
    "etcd": _etcd,
    "nats": _nats,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(MAKERS))
def source(request: pytest.FixtureRequest, tmp_path: Path) -> config.Source:
    return MAKERS[request.param](tmp_path, request)


def test_binds_to_the_schema(source: config.Source) -> None:
    assert config.load(App, sources=[source]).value == App(DB("h", 5), ["a", "b"])


def _plain(source: config.Source) -> dict[str, object]:
    # Secret text is never parsed as JSON without a schema: it would lose its mask.
    if source.secret:
        return {"db": {"host": "h", "port": "5"}, "tags": '["a","b"]'}
    return DOC


def test_plain_dict_without_schema(source: config.Source) -> None:
    value = config.load(sources=[source]).value
    assert value == _plain(source)
    assert all(isinstance(v, config.Secret) for v in value["db"].values()) == source.secret


def test_explain_names_the_source_and_what_it_overrode(source: config.Source) -> None:
    cfg = config.load(App, sources=[config.mapping({"db": {"host": "x"}}, name="d"), source])
    exp = cfg.explain("db.host")
    assert exp.source == source.name
    assert exp.overrode == (("d", "x"),)


def test_overrides_earlier_sources_and_keeps_their_other_keys(source: config.Source) -> None:
    cfg = config.load(sources=[{"db": {"user": "u", "port": 1}}, source])
    assert cfg.value["db"] == {"user": "u", **_plain(source)["db"]}  # type: ignore[dict-item]


def test_has_a_name_and_a_repr(source: config.Source) -> None:
    assert source.name
    assert source.name in repr(source)
