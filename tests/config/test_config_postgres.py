"""config.postgres: typed binding, a prefix, and hot reload on NOTIFY (a plain UPDATE)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import asyncpg
import pytest

from microstd import config
from microstd.errors import ConfigError

pytestmark = pytest.mark.services


@dataclass
class DB:
    host: str = ""
    port: int = 0


@dataclass
class App:
    db: DB = field(default_factory=DB)
    debug: bool = False


async def test_typed_binding_prefix_and_hot_reload(postgres_url: str) -> None:
    table = f"c{uuid.uuid4().hex[:10]}"
    source = config.postgres(postgres_url, table=table, prefix="svc.")
    await source.fetch()  # creates the table
    db = await asyncpg.connect(postgres_url)
    try:
        await db.executemany(
            f"INSERT INTO {table} (key, value) VALUES ($1, $2)",
            [("svc.db.host", "a"), ("svc.db.port", "6000"), ("svc.debug", "true"), ("x.y", "1")],
        )
        cfg = await config.load_async(App, sources=[source])
        assert cfg.value == App(DB("a", 6000), True)
        assert cfg.explain("db.host").source == f"postgres:{table}/svc.*"
        changes: asyncio.Queue[config.Change] = asyncio.Queue()

        async def run() -> None:
            async for change in cfg.watch(debounce=0.02):
                changes.put_nowait(change)

        task = asyncio.create_task(run())
        try:
            # A plain UPDATE, as an operator would type it: the trigger announces it.
            for _ in range(40):
                await db.execute(f"UPDATE {table} SET value = 'b' WHERE key = 'svc.db.host'")
                try:
                    change = await asyncio.wait_for(changes.get(), 0.5)
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                raise AssertionError("no change reported")
            assert change.paths == ("db.host",)
            assert cfg.value.db.host == "b"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await db.close()


async def test_an_unreachable_database_is_a_config_error(postgres_url: str) -> None:
    from _servers import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(ConfigError, match="cannot read from PostgreSQL"):
        await config.load_async(sources=[config.postgres(url, connect_timeout=1)])
    cfg = await config.load_async(
        sources=[{"a": 1}, config.postgres(url, connect_timeout=1, optional=True)]
    )
    assert cfg.value == {"a": 1}
