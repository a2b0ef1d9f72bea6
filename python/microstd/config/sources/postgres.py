"""PostgreSQL: a table of dotted keys and text values, reloaded on NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from microstd import _deps
from microstd.config.sources._kv import kv_tree
from microstd.config.sources.base import Source
from microstd.errors import ConfigError, MicrostdError

__all__ = ["PostgresSource", "postgres"]

DEFAULT_TABLE = "microstd_config"
SCHEMA_VERSION = 1


def _ddl(t: str) -> str:
    # A statement-level trigger announces every change, however it is made (an
    # UPDATE typed in psql included), so watchers need no polling.
    return f"""
CREATE TABLE {t} (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION {t}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{t}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER {t}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {t}_notify();
"""


class PostgresSource(Source):
    """Rows of one table (created on first use): `key` (dotted: ``db.host``) and
    `value` (text, coerced by the schema). With `prefix`, only keys under it,
    the prefix removed. Watching: a trigger NOTIFYs on every change; after a lost
    connection the source reloads once it is back.
    """

    textual = True

    def __init__(
        self,
        url: str,
        *,
        table: str = DEFAULT_TABLE,
        prefix: str = "",
        separator: str = ".",
        optional: bool = False,
        name: str | None = None,
        **connection: Any,
    ) -> None:
        with _deps.needed_by("config.postgres()"):
            from microstd._engines import postgres as engine

        self.endpoint, rest = engine.PostgresEndpoint.from_url(url, connection)
        if rest:
            raise TypeError(f"unknown postgres config options: {sorted(rest)}")
        self.table = engine.identifier(table)
        self.prefix = prefix
        self.separator = separator
        where = f"{prefix}*" if prefix else "*"
        super().__init__(name or f"postgres:{self.table}/{where}", optional=optional)

    async def _acquire(self) -> Any:
        from microstd._engines import postgres as engine

        conn = await engine.acquire(self.endpoint)
        try:
            await conn.schema(f"config:{self.table}", SCHEMA_VERSION, _ddl(self.table))
        except BaseException:
            await engine.release(conn)
            raise
        return conn

    async def fetch(self) -> dict[str, Any]:
        from microstd._engines import postgres as engine

        try:
            conn = await self._acquire()
            try:
                rows = await conn.fetch(
                    "config read",
                    f"SELECT key, value FROM {self.table} WHERE starts_with(key, $1)",
                    self.prefix,
                    read=True,
                )
            finally:
                await engine.release(conn)
        except MicrostdError as exc:
            raise ConfigError(f"{self.name}: cannot read from PostgreSQL: {exc}") from None
        pairs = {str(row[0]): str(row[1]) for row in rows}
        return kv_tree(pairs, self.prefix, self.separator, self.name)

    async def changes(self) -> AsyncIterator[None]:
        from microstd._engines import postgres as engine

        changed = asyncio.Event()
        try:
            conn = await self._acquire()
        except MicrostdError as exc:
            raise ConfigError(f"{self.name}: cannot watch PostgreSQL: {exc}") from None
        try:
            try:
                stop = await conn.listener().listen(
                    self.table, lambda _payload: changed.set(), resync=changed.set
                )
            except MicrostdError as exc:
                raise ConfigError(f"{self.name}: cannot watch PostgreSQL: {exc}") from None
            try:
                # The first signal is free: the reload's diff catches a change made
                # between the load and the start of the watch.
                yield None
                while True:
                    await changed.wait()
                    changed.clear()
                    yield None
            finally:
                with contextlib.suppress(Exception):
                    await stop()
        finally:
            await engine.release(conn)


def postgres(
    url: str,
    *,
    table: str = DEFAULT_TABLE,
    prefix: str = "",
    separator: str = ".",
    optional: bool = False,
    name: str | None = None,
    **connection: Any,
) -> PostgresSource:
    """The rows of `table` at `url` (``postgresql://``): dotted keys, text values, hot
    reload on change. `connection` takes the engine's options (`timeout`, ...)."""
    return PostgresSource(
        url,
        table=table,
        prefix=prefix,
        separator=separator,
        optional=optional,
        name=name,
        **connection,
    )
