"""`file://PATH`: a store in one SQLite database file (standard library `sqlite3`).

    store = microstd.store.open("file:///var/lib/app/store.db")   # absolute path
    store = microstd.store.open("file://state.db")                # relative to the cwd

Durability: the database runs in WAL mode and every write is one committed
transaction before it is acknowledged, so an acknowledged write survives the
process being killed (SIGKILL). With the default `synchronous=full` it also
survives an OS crash or power loss; `synchronous=normal` is faster and still
survives a process crash, but may lose the last writes on an OS crash.

All SQLite work runs on one private worker thread per store, so the event loop
never blocks. Revisions come from a counter stored in the database, so they only
grow, across processes and restarts. Expired rows are invisible at once and
deleted by a background sweep, which is also what produces "expire" events.

Watch sees the changes made through any `FileStore` of this process on the same
file; writes made by *other processes* are not watched (SQLite has no change feed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from microstd._backends import ParsedURL
from microstd._sqlite import open_wal
from microstd.errors import Closed, Conflict, ConnectionFailed
from microstd.store._common import (
    EventFanout,
    Expirer,
    decode_record,
    malformed,
    prefix_successor,
)
from microstd.store._network import NetworkStore, Put
from microstd.store._watch import Emit, Fail, Unsubscribe
from microstd.store.base import Event, Record, Revision

__all__ = ["FileStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    metadata TEXT NOT NULL,
    revision INTEGER NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('revision', 0);
"""
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_READ_SQL = (
    "SELECT key, value, metadata, revision, expires_at FROM records"
    " WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
_SYNC_MODES = {"off", "normal", "full", "extra"}

# The watcher fan-outs of every open FileStore of this process, by database path,
# so a write through one store reaches the watchers of all stores on that file.
_peers: dict[str, set[EventFanout]] = {}


def _publish(path: str, event: Event) -> None:
    for fanout in list(_peers.get(path, ())):
        fanout.publish(event)


def _watched(path: str) -> bool:
    return any(f.active for f in _peers.get(path, ()))


class FileStore(NetworkStore):
    """A store in a SQLite database file, in WAL mode, on a private worker thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: object = None,
        synchronous: str = "full",
        sweep_interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        if str(synchronous).lower() not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {sorted(_SYNC_MODES)}")
        super().__init__(codec=codec)
        self.path = Path(path)
        self._synchronous = str(synchronous).upper()
        self._timeout = float(timeout)
        self._sweep_interval = float(sweep_interval)
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._expirer: Expirer | None = None
        self._key_path = os.path.abspath(self.path)
        self._fanout = EventFanout()

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> FileStore:
        """`file:///abs/path.db` or `file://relative/path.db`; options from the query."""
        path = parsed.netloc_name + parsed.path
        if not path:
            raise ValueError("file:// URL needs a path, e.g. file:///var/lib/app.db")
        merged: dict[str, Any] = {**parsed.query, **options}
        for name in ("sweep_interval", "timeout"):
            if name in merged:
                merged[name] = float(merged[name])
        return cls(path, **merged)

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    # -- lifecycle ---------------------------------------------------------

    async def _open(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="microstd-file-store")
        try:
            self._db = await self._call(self._connect_db)
        except BaseException:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise
        _peers.setdefault(self._key_path, set()).add(self._fanout)
        self._expirer = Expirer(self._sweep, self._sweep_interval)
        self._expirer.start()

    def _connect_db(self) -> sqlite3.Connection:
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = open_wal(
                self.path, timeout=self._timeout, synchronous=self._synchronous, schema=_SCHEMA
            )
        except (sqlite3.Error, OSError) as exc:
            raise ConnectionFailed(f"cannot open SQLite store {str(self.path)!r}: {exc}") from exc
        return db

    async def _shutdown(self) -> None:
        peers = _peers.get(self._key_path)
        if peers is not None:
            peers.discard(self._fanout)
            if not peers:
                _peers.pop(self._key_path, None)
        self._fanout.close_all()
        if self._expirer is not None:
            await self._expirer.stop()
        db, pool = self._db, self._pool
        self._db = self._pool = None
        if db is not None and pool is not None:
            await asyncio.get_running_loop().run_in_executor(pool, db.close)
        if pool is not None:
            pool.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise Closed("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(db, *args)` on the worker thread."""
        db = self._db
        if db is None:
            raise Closed("store is closed")
        return await self._call(_guarded, fn, db, *args)

    # -- writes --------------------------------------------------------------

    async def _put(self, put: Put) -> Revision | None:
        try:
            rev = await self._run(
                _write_one,
                put.key,
                put.data,
                json.dumps(put.metadata),
                put.expires_at,
                put.if_revision,
                put.if_absent,
            )
        except Conflict:
            return None
        self._after_put(put.key, put.data, put.metadata, rev, put.expires_at)
        return rev

    async def _put_many(
        self, items: dict[str, bytes], ttl: float | None, expires_at: float | None
    ) -> dict[str, Revision]:
        rows = list(items.items())
        revs = await self._run(_write_rows, rows, expires_at)
        for (key, data), rev in zip(rows, revs, strict=True):
            self._after_put(key, data, {}, rev, expires_at)
        return dict(zip((k for k, _ in rows), revs, strict=True))

    def _after_put(
        self, key: str, data: bytes, meta: dict[str, str], rev: int, expires_at: float | None
    ) -> None:
        if expires_at is not None and self._expirer is not None:
            self._expirer.poke(expires_at)
        if _watched(self._key_path):
            record = Record(key, self._codec.loads(data), meta, rev, expires_at)
            _publish(self._key_path, Event("put", key, record))

    async def _remove(self, key: str) -> bool:
        return bool(await self._remove_many([key]))

    async def _remove_many(self, keys: list[str]) -> int:
        deleted = await self._run(_delete_rows, keys)
        for gone in deleted:
            _publish(self._key_path, Event("delete", gone))
        return len(deleted)

    async def _sweep(self) -> float | None:
        expired, next_at = await self._run(_sweep_rows)
        for key in expired:
            _publish(self._key_path, Event("expire", key))
        return next_at

    # -- reads ---------------------------------------------------------------

    async def _get(self, key: str) -> Record | None:
        rows = await self._run(_read_rows, [key])
        return self._record(rows[0]) if rows else None

    async def _get_many(self, keys: list[str]) -> dict[str, Record]:
        rows = await self._run(_read_rows, keys)
        return {record.key: record for record in map(self._record, rows)}

    async def _exists(self, key: str) -> bool:
        return bool(await self._run(_exists, key))

    def _record(self, row: tuple[object, ...]) -> Record:
        # The database file may have been written by another program: SQLite
        # keeps whatever types it was given, so every column is checked.
        key, data, meta, rev, expires_at = row
        if not isinstance(key, str):
            raise malformed(key, "the key is not text")
        return decode_record(
            self._codec, key, data, metadata=meta, revision=rev, expires_at=expires_at
        )

    async def _keys(self, prefix: str, suffix: str, limit: int | None, offset: int) -> list[str]:
        return await self._run(_list_keys, prefix, suffix, limit, offset)

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        return self._fanout.add(prefix, emit, fail)


# -- worker-thread functions (each one transaction) --------------------------


def _guarded(fn: Callable[..., T], db: sqlite3.Connection, *args: Any) -> T:
    try:
        return fn(db, *args)
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.rollback()
        raise ConnectionFailed(f"SQLite store failed: {exc}") from exc
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise


def _next_revision(db: sqlite3.Connection) -> int:
    row = db.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'revision' RETURNING value"
    ).fetchone()
    return int(row[0])


def _write_one(
    db: sqlite3.Connection,
    key: str,
    data: bytes,
    meta: str,
    expires_at: float | None,
    if_revision: Revision | None,
    if_absent: bool,
) -> int:
    db.execute("BEGIN IMMEDIATE")
    if if_absent or if_revision is not None:
        row = db.execute(
            f"SELECT revision FROM records WHERE key = ? AND {_LIVE}",  # noqa: S608 - constant SQL
            (key, time.time()),
        ).fetchone()
        if if_absent and row is not None:
            raise Conflict(f"key {key!r} already exists")
        if if_revision is not None and (row is None or row[0] != if_revision):
            raise Conflict(f"key {key!r} is not at revision {if_revision!r}")
    rev = _next_revision(db)
    db.execute(
        "INSERT OR REPLACE INTO records (key, value, metadata, revision, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (key, data, meta, rev, expires_at),
    )
    db.execute("COMMIT")
    return rev


def _write_rows(
    db: sqlite3.Connection, rows: list[tuple[str, bytes]], expires_at: float | None
) -> list[int]:
    db.execute("BEGIN IMMEDIATE")
    revs = []
    for key, data in rows:
        rev = _next_revision(db)
        db.execute(
            "INSERT OR REPLACE INTO records (key, value, metadata, revision, expires_at)"
            " VALUES (?, ?, '{}', ?, ?)",
            (key, data, rev, expires_at),
        )
        revs.append(rev)
    db.execute("COMMIT")
    return revs


def _delete_rows(db: sqlite3.Connection, keys: list[str]) -> list[str]:
    now = time.time()
    deleted = []
    db.execute("BEGIN IMMEDIATE")
    for key in keys:
        row = db.execute(
            "DELETE FROM records WHERE key = ? RETURNING expires_at", (key,)
        ).fetchone()
        if row is not None and (row[0] is None or row[0] > now):
            deleted.append(key)
    db.execute("COMMIT")
    return deleted


def _sweep_rows(db: sqlite3.Connection) -> tuple[list[str], float | None]:
    db.execute("BEGIN IMMEDIATE")
    rows = db.execute(
        "DELETE FROM records WHERE expires_at <= ? RETURNING key", (time.time(),)
    ).fetchall()
    nxt = db.execute("SELECT min(expires_at) FROM records").fetchone()[0]
    db.execute("COMMIT")
    return sorted(r[0] for r in rows), nxt


def _read_rows(
    db: sqlite3.Connection, keys: list[str]
) -> list[tuple[str, bytes, str, int, float | None]]:
    now = time.time()
    out = []
    for key in keys:
        row = db.execute(_READ_SQL, (key, now)).fetchone()
        if row is not None:
            out.append(row)
    return out


def _exists(db: sqlite3.Connection, key: str) -> bool:
    sql = f"SELECT 1 FROM records WHERE key = ? AND {_LIVE}"  # noqa: S608 - constant SQL
    row = db.execute(sql, (key, time.time()))
    return row.fetchone() is not None


def _list_keys(
    db: sqlite3.Connection, prefix: str, suffix: str, limit: int | None, offset: int
) -> list[str]:
    # A range on the primary key, not LIKE: LIKE is case-insensitive and cannot use the index.
    where = [_LIVE, "key >= ?"]
    args: list[object] = [time.time(), prefix]
    upper = prefix_successor(prefix) if prefix else None
    if upper is not None:
        where.append("key < ?")
        args.append(upper)
    if suffix:
        where.append("length(key) >= ? AND substr(key, length(key) - ? + 1) = ?")
        args += [len(suffix), len(suffix), suffix]
    args += [-1 if limit is None else limit, offset]
    # Only constant fragments are joined; every value is a bound parameter.
    sql = f"SELECT key FROM records WHERE {' AND '.join(where)} ORDER BY key LIMIT ? OFFSET ?"  # noqa: S608
    return [r[0] for r in db.execute(sql, args)]
