"""`postgresql://`: the registry in a PostgreSQL table, with NOTIFY as the change hint.

    registry = microstd.registry.open("postgresql://app@db:5432/app?table=app_registry")

One row per node in ``<table>`` (default ``microstd_registry``, created on
first use): service name, node id, the node's JSON record and its expiry time
(epoch seconds). Every register and deregister NOTIFYs ``<table>`` with the
service name in the same statement, so watchers re-read at once; a watch
whose listening connection was lost re-reads when it is back (and polls every
`poll_interval` meanwhile), so it misses no change of the registry's state.
Rows expired for more than a minute are deleted by the next registration.

Connection, pool, timeouts and errors are `microstd._engines.postgres`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import postgres as engine
from microstd.errors import Closed, DecodeError
from microstd.registry.base import ChangeFeed, EventChangeFeed, NodeRecord, Registry

__all__ = ["PostgresRegistry"]

DEFAULT_TABLE = "microstd_registry"
SCHEMA_VERSION = 1
_OPTIONS = ("table",)
# Seconds between purges of long-expired rows, and how long past expiry a row is kept.
_PURGE_EVERY = 30.0
_PURGE_AFTER = 60.0


def _ddl(t: str) -> str:
    return f"""
CREATE TABLE {t} (
    name text NOT NULL,
    node_id text NOT NULL,
    record bytea NOT NULL,
    expires_at double precision,
    PRIMARY KEY (name, node_id)
);
"""


class _Feed(EventChangeFeed):
    """Set by a notification, or by the listener coming back after a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.stop: Callable[[], Awaitable[None]] | None = None

    def poke(self, _payload: str = "") -> None:
        self.mark_changed()

    async def close(self) -> None:
        stop, self.stop = self.stop, None
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()


class PostgresRegistry(Registry):
    """Registry in one PostgreSQL table (see the module docstring)."""

    def __init__(
        self,
        url: str | engine.PostgresEndpoint,
        *,
        table: str = DEFAULT_TABLE,
        **connection: Any,
    ) -> None:
        if isinstance(url, engine.PostgresEndpoint):
            if connection:
                raise TypeError(f"unknown postgres registry options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.PostgresEndpoint.from_url(url, connection)
            if rest:
                raise TypeError(f"unknown postgres registry options: {sorted(rest)}")
        t = self._table = engine.identifier(table)
        self._put_sql = (
            f"WITH w AS (INSERT INTO {t} (name, node_id, record, expires_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (name, node_id) DO UPDATE"
            " SET record = excluded.record, expires_at = excluded.expires_at RETURNING name)"
            f" SELECT pg_notify('{t}', w.name) FROM w"
        )
        self._remove_sql = (
            f"WITH d AS (DELETE FROM {t} WHERE name = $1 AND node_id = $2 RETURNING name)"
            f" SELECT pg_notify('{t}', d.name) FROM d"
        )
        self._load_one = f"SELECT record FROM {t} WHERE name = $1"
        self._load_all = f"SELECT record FROM {t}"
        self._purge_sql = f"DELETE FROM {t} WHERE expires_at < $1"
        self._conn: engine.PostgresConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._last_purge = 0.0

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> PostgresRegistry:
        """`postgresql://[user[:password]@]host[:port]/db`; `table` may be in the query."""
        endpoint, mine = engine.PostgresEndpoint.from_url(parsed, options, area=_OPTIONS)
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"PostgresRegistry({self._endpoint.redacted!r}, table={self._table!r})"

    async def connect(self) -> None:
        self._check_open()
        if self._conn is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None:
                return
            conn = await engine.acquire(self._endpoint)
            try:
                await conn.schema(f"registry:{self._table}", SCHEMA_VERSION, _ddl(self._table))
            except BaseException:
                await engine.release(conn)
                raise
            self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)

    async def _db(self) -> engine.PostgresConnection:
        if self._conn is None:
            await self.connect()
        if self._conn is None:  # closed meanwhile
            raise Closed("registry is closed")
        return self._conn

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        db = await self._db()
        await db.fetch(
            "registry register",
            self._put_sql,
            record.name,
            record.node_id,
            record.encode(),
            record.expires_at,
        )
        now = time.time()
        if now - self._last_purge > _PURGE_EVERY:
            self._last_purge = now
            await db.execute("registry purge", self._purge_sql, now - _PURGE_AFTER)

    async def _remove(self, name: str, node_id: str) -> None:
        db = await self._db()
        await db.fetch("registry deregister", self._remove_sql, name, node_id)

    async def _load(self, name: str | None) -> list[NodeRecord]:
        db = await self._db()
        if name is None:
            rows = await db.fetch("registry lookup", self._load_all, read=True)
        else:
            rows = await db.fetch("registry lookup", self._load_one, name, read=True)
        out = []
        for row in rows:
            try:
                out.append(NodeRecord.decode(bytes(row[0])))
            except DecodeError:
                continue  # a foreign row; not ours to interpret
        return out

    async def _changes(self) -> ChangeFeed:
        db = await self._db()
        feed = _Feed()
        feed.stop = await db.listener().listen(self._table, feed.poke, resync=feed.poke)
        return feed
