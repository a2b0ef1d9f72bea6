"""`postgresql://USER@HOST:PORT/DB`: a store in a PostgreSQL table (asyncpg).

    store = microstd.store.open("postgresql://app@db:5432/app", table="sessions")

Layout, for the table named by `table` (default ``microstd_store``; created on
first use, its version recorded in ``microstd_schema``):

- ``<table>``: one row per key (``key bytea`` primary key, the encoded value
  as ``bytea``, metadata as JSON text, ``revision``, ``expires_at`` in epoch
  seconds of the server's clock, and a ``state``: live, deleted or expired);
- ``<table>_counters``: the revision counter, shared by every key. Every
  change takes the next revision under that row's lock, so revisions are
  strictly increasing *in commit order* (what makes watch resync exact), and
  never reused;
- NOTIFY channel ``<table>``: every change announces itself there, in the
  same statement.

A delete or an expiry leaves a *tombstone* row (no value) with a new revision,
so a watch that reconnects can read back what it missed; tombstones are
purged after ``tombstone_retention`` seconds (default 600).

TTL: an expired row is invisible at once (every read checks the server's
clock); a background sweep (every ``purge_interval`` seconds at most, default
1, sooner for this store's own writes) turns expired rows into tombstones,
which is what produces "expire" events.

Watch: through LISTEN on the endpoint's shared listening connection
(`microstd._engines.postgres.Listener`). A notification carries the whole
change when it fits in PostgreSQL's 8000-byte payload; a larger value is read
back from the table (if the key changed again meanwhile, that intermediate put
is skipped: the watcher sees the newer change next). When the listening
connection is lost the watch keeps going: once it is back, the watch reads
every change after the last one it delivered (``revision > last``) and then
carries on live, so no change is missed; a watch away longer than
``tombstone_retention`` may have missed deletes and ends with
`ConnectionFailed` instead.

Connection, pool, timeouts and errors are `microstd._engines.postgres`'s.
A write that raised `ConnectionFailed` may still have been committed.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import asyncpg

from microstd._backends import ParsedURL
from microstd._engines import postgres as engine
from microstd._engines._common import seconds_option
from microstd.errors import Closed, InvalidKey
from microstd.store._common import Expirer, decode_record, stored_value
from microstd.store._network import NetworkStore, Put
from microstd.store._postgres_watch import PostgresWatch
from microstd.store._watch import Emit, Fail, Unsubscribe
from microstd.store.base import Record, Revision

__all__ = ["PostgresStore"]

DEFAULT_TABLE = "microstd_store"
SCHEMA_VERSION = 1
#: Keys longer than this (UTF-8 bytes) raise `InvalidKey`: a btree index entry
#: must fit in a third of a page, and a key must fit in a notification.
MAX_KEY_BYTES = 2048
# A notification's payload must stay under PostgreSQL's 8000 bytes.
_INLINE_LIMIT = 7800

_STATE_LIVE, _STATE_DELETED, _STATE_EXPIRED = 0, 1, 2
_NOW = "date_part('epoch', clock_timestamp())"
_LIVE = f"t.state = 0 AND (t.expires_at IS NULL OR t.expires_at > {_NOW})"

_OPTIONS = ("table", "codec", "purge_interval", "tombstone_retention")


def _ddl(table: str) -> str:
    return f"""
CREATE TABLE {table} (
    key bytea PRIMARY KEY,
    value bytea,
    metadata text NOT NULL DEFAULT '',
    revision bigint NOT NULL,
    expires_at double precision,
    state smallint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {table}_revision ON {table} (revision);
CREATE INDEX {table}_expiry ON {table} (expires_at) WHERE state = 0 AND expires_at IS NOT NULL;
CREATE INDEX {table}_tombstones ON {table} (changed_at) WHERE state <> 0;
CREATE TABLE {table}_counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO {table}_counters (name, value) VALUES ('revision', 0), ('floor', 0);
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tail(key: bytes, metadata: str, data: bytes) -> str:
    """The part of a put notification after its revision and expiry: the change
    itself when it fits, else the key and ``* *`` (read it from the table)."""
    k = _b64(key)
    m = _b64(metadata.encode()) if metadata else ""
    if (len(key) + len(metadata) + len(data)) * 4 // 3 + 16 < _INLINE_LIMIT:
        return f"{k} {m} {_b64(data)}"
    return f"{k} * *"


class _SQL:
    """Every statement of one table, written once (asyncpg prepares each per connection)."""

    def __init__(self, t: str) -> None:
        take = f"UPDATE {t}_counters SET value = value + 1 WHERE name = 'revision' RETURNING value"
        expires = f"CASE WHEN $4::float8 IS NULL THEN NULL ELSE {_NOW} + $4::float8 END"
        notify = (
            f"SELECT w.revision, pg_notify('{t}', 'p' || w.revision || ' ' ||"
            " coalesce(w.expires_at::text, '-') || ' ' || $5) FROM w"
        )
        upsert = (
            f"WITH r AS ({take}), w AS ("
            f" INSERT INTO {t} AS t (key, value, metadata, revision, expires_at, state, changed_at)"
            f" SELECT $1, $2, $3, r.value, {expires}, 0, now() FROM r"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " metadata = excluded.metadata, revision = excluded.revision,"
            " expires_at = excluded.expires_at, state = 0, changed_at = excluded.changed_at"
            " {cond} RETURNING t.revision, t.expires_at) "
        ) + notify
        self.put = upsert.format(cond="")
        self.put_absent = upsert.format(
            cond=f"WHERE t.state <> 0 OR (t.expires_at IS NOT NULL AND t.expires_at <= {_NOW})"
        )
        self.put_revision = (
            f"WITH r AS ({take}), w AS ("
            f" UPDATE {t} AS t SET value = $2, metadata = $3, revision = r.value,"
            f" expires_at = {expires}, state = 0, changed_at = now() FROM r"
            f" WHERE t.key = $1 AND t.revision = $6 AND {_LIVE}"
            " RETURNING t.revision, t.expires_at) "
        ) + notify
        self.delete = (
            f"WITH r AS ({take}), d AS ("
            f" UPDATE {t} AS t SET value = NULL, metadata = '', revision = r.value,"
            " expires_at = NULL, state = 1, changed_at = now() FROM r"
            f" WHERE t.key = $1 AND {_LIVE} RETURNING t.revision)"
            f" SELECT pg_notify('{t}', 'd' || d.revision || ' - ' || $2) FROM d"
        )
        columns = "t.key, t.value, t.metadata, t.revision, t.expires_at"
        self.get = f"SELECT {columns} FROM {t} AS t WHERE t.key = $1 AND {_LIVE}"
        self.get_many = f"SELECT {columns} FROM {t} AS t WHERE t.key = ANY($1::bytea[]) AND {_LIVE}"
        self.exists = f"SELECT EXISTS (SELECT 1 FROM {t} AS t WHERE t.key = $1 AND {_LIVE})"
        self.take_many = (
            f"UPDATE {t}_counters SET value = value + $1 WHERE name = 'revision'"
            f" RETURNING value, CASE WHEN $2::float8 IS NULL THEN NULL ELSE {_NOW} + $2::float8 END"
        )
        self.put_many = (
            f"INSERT INTO {t} AS t (key, value, metadata, revision, expires_at, state, changed_at)"
            " SELECT u.k, u.v, '', u.r, $4, 0, now()"
            " FROM unnest($1::bytea[], $2::bytea[], $3::bigint[]) AS u(k, v, r)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, metadata = '',"
            " revision = excluded.revision, expires_at = excluded.expires_at, state = 0,"
            " changed_at = excluded.changed_at"
        )
        self.notify_many = (
            f"SELECT pg_notify('{t}', u.p) FROM unnest($1::text[]) WITH ORDINALITY AS u(p, i)"
            " ORDER BY u.i"
        )
        # The sweep: expired rows become tombstones, under the counter's lock
        # (taken first, as every writer does, so no deadlock).
        self.next_expiry = f"SELECT min(expires_at) FROM {t} WHERE state = 0"
        self.any_expired = (
            f"SELECT EXISTS (SELECT 1 FROM {t} WHERE state = 0 AND expires_at <= {_NOW})"
        )
        self.lock_counter = f"SELECT value FROM {t}_counters WHERE name = 'revision' FOR UPDATE"
        self.expired = (
            f"SELECT key FROM {t} WHERE state = 0 AND expires_at <= {_NOW} ORDER BY key LIMIT 1000"
        )
        self.expire = (
            f"UPDATE {t} AS t SET value = NULL, metadata = '', revision = u.r, expires_at = NULL,"
            " state = 2, changed_at = now()"
            " FROM unnest($1::bytea[], $2::bigint[]) AS u(k, r) WHERE t.key = u.k"
        )
        self.set_counter = f"UPDATE {t}_counters SET value = $1 WHERE name = 'revision'"
        self.purge = (
            f"WITH p AS (DELETE FROM {t} WHERE state <> 0"
            " AND changed_at < now() - make_interval(secs => $1) RETURNING revision)"
            f" UPDATE {t}_counters SET value = greatest(value, (SELECT max(revision) FROM p))"
            " WHERE name = 'floor' AND EXISTS (SELECT 1 FROM p)"
        )
        # For the watch.
        self.counter = f"SELECT value FROM {t}_counters WHERE name = 'revision'"
        self.floor = f"SELECT value FROM {t}_counters WHERE name = 'floor'"
        self.changes = (
            f"SELECT t.key, t.value, t.metadata, t.revision, t.expires_at, t.state FROM {t} AS t"
            " WHERE t.revision > $1 AND t.key >= $2 AND ($3::bytea IS NULL OR t.key < $3)"
            " ORDER BY t.revision LIMIT 500"
        )
        self.at_revision = (
            f"SELECT t.key, t.value, t.metadata, t.revision, t.expires_at FROM {t} AS t"
            " WHERE t.key = $1 AND t.revision = $2 AND t.state = 0"
        )
        self._t = t
        self._keys: dict[tuple[bool, bool, bool, bool], str] = {}

    def keys(self, upper: bool, suffix: bool, limit: bool, offset: bool) -> str:
        """The listing statement for this combination of filters."""
        shape = (upper, suffix, limit, offset)
        sql = self._keys.get(shape)
        if sql is None:
            n = 2
            where = [_LIVE, "t.key >= $1::bytea"]
            if upper:
                where.append(f"t.key < ${n}::bytea")
                n += 1
            if suffix:
                where.append(
                    f"octet_length(t.key) >= octet_length(${n}::bytea)"
                    f" AND substring(t.key from octet_length(t.key) - octet_length(${n}::bytea)"
                    f" + 1) = ${n}::bytea"
                )
                n += 1
            sql = f"SELECT t.key FROM {self._t} AS t WHERE {' AND '.join(where)} ORDER BY t.key"
            if limit:
                sql += f" LIMIT ${n}"
                n += 1
            if offset:
                sql += f" OFFSET ${n}"
            self._keys[shape] = sql
        return sql


def upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix`."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class PostgresStore(NetworkStore):
    """A store in one PostgreSQL table: revisions in commit order, LISTEN/NOTIFY watch."""

    def __init__(
        self,
        url: str | engine.PostgresEndpoint,
        *,
        table: str = DEFAULT_TABLE,
        codec: object = None,
        purge_interval: float = 1.0,
        tombstone_retention: float = 600.0,
        **connection: Any,
    ) -> None:
        """`url` is a ``postgresql://`` URL (or an endpoint); `connection` holds the
        engine's options (`connect_timeout`, `timeout`, `ping_interval`, `pool_size`,
        `statement_cache_size`)."""
        super().__init__(codec=codec)
        if isinstance(url, engine.PostgresEndpoint):
            if connection:
                raise TypeError(f"unknown postgres store options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.PostgresEndpoint.from_url(url, connection)
            if rest:
                raise TypeError(f"unknown postgres store options: {sorted(rest)}")
        self._table = engine.identifier(table)
        self._sql = _SQL(self._table)
        self._purge_interval = seconds_option("purge_interval", purge_interval)
        self._retention = seconds_option("tombstone_retention", tombstone_retention)
        self._conn: engine.PostgresConnection | None = None
        self._expirer: Expirer | None = None
        self._last_purge = 0.0

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> PostgresStore:
        """`postgresql://[user[:password]@]host[:port]/db`; the store's own options
        (`table`, `codec`, `purge_interval`, `tombstone_retention`) may be in the query."""
        endpoint, mine = engine.PostgresEndpoint.from_url(parsed, options, area=_OPTIONS)
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"PostgresStore({self._endpoint.redacted!r}, table={self._table!r})"

    @property
    def _db(self) -> engine.PostgresConnection:
        if self._conn is None:
            raise Closed("store is closed")
        return self._conn

    def _check_key(self, key: str) -> None:
        if len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidKey(f"PostgreSQL store keys are at most {MAX_KEY_BYTES} bytes of UTF-8")

    async def _open(self) -> None:
        conn = await engine.acquire(self._endpoint)
        try:
            await conn.schema(f"store:{self._table}", SCHEMA_VERSION, _ddl(self._table))
        except BaseException:
            await engine.release(conn)
            raise
        self._conn = conn
        self._expirer = Expirer(self._sweep, self._purge_interval)
        self._expirer.start()

    async def _shutdown(self) -> None:
        expirer, self._expirer = self._expirer, None
        if expirer is not None:
            await expirer.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)

    # -- writes ------------------------------------------------------------------

    async def _put(self, put: Put) -> Revision | None:
        raw = put.key.encode()
        meta = json.dumps(put.metadata) if put.metadata else ""
        payload = tail(raw, meta, put.data)
        sql = self._sql
        if put.if_revision is not None:
            # Our revisions are ints; anything else can never match.
            if isinstance(put.if_revision, bool) or not isinstance(put.if_revision, int):
                return None
            if not -(2**63) <= put.if_revision < 2**63:
                return None
            row = await self._db.fetchrow(
                "store write",
                sql.put_revision,
                raw,
                put.data,
                meta,
                put.ttl,
                payload,
                put.if_revision,
            )
        else:
            statement = sql.put_absent if put.if_absent else sql.put
            row = await self._db.fetchrow(
                "store write", statement, raw, put.data, meta, put.ttl, payload
            )
        if row is None:
            return None
        if put.ttl is not None and self._expirer is not None:
            self._expirer.poke(time.time() + put.ttl)
        return int(row[0])

    async def _put_many(
        self, items: dict[str, bytes], ttl: float | None, expires_at: float | None
    ) -> dict[str, Revision]:
        if not items:
            return {}
        keys = [k.encode() for k in items]
        values = list(items.values())
        sql = self._sql

        async def write(conn: asyncpg.Connection) -> dict[str, Revision]:
            timeout = self._endpoint.timeouts.request
            async with conn.transaction():
                top, expires = await conn.fetchrow(sql.take_many, len(keys), ttl, timeout=timeout)
                revisions = list(range(top - len(keys) + 1, top + 1))
                await conn.execute(sql.put_many, keys, values, revisions, expires, timeout=timeout)
                head = "-" if expires is None else repr(expires)
                payloads = [
                    f"p{rev} {head} {tail(k, '', v)}"
                    for k, v, rev in zip(keys, values, revisions, strict=True)
                ]
                await conn.execute(sql.notify_many, payloads, timeout=timeout)
            return dict(zip(items, revisions, strict=True))

        out = await self._db.run("store write_many", write)
        if ttl is not None and self._expirer is not None:
            self._expirer.poke(time.time() + ttl)
        return out

    async def _remove(self, key: str) -> bool:
        raw = key.encode()
        row = await self._db.fetchrow("store delete", self._sql.delete, raw, _b64(raw))
        return row is not None

    # -- reads ---------------------------------------------------------------------

    def _record(self, row: Any) -> Record:
        key = row[0].decode("utf-8", "replace")
        data = row[1]
        revision = row[3]
        if not row[2] and row[4] is None and type(revision) is int and type(data) is bytes:
            # The usual row (no metadata, no TTL): the columns' types are the table's,
            # only the value needs checking (a third of a read's Python time).
            return Record(key, stored_value(self._codec, key, data), {}, revision, None)
        return decode_record(
            self._codec,
            key,
            None if data is None else bytes(data),
            metadata=row[2],
            revision=row[3],
            expires_at=row[4],
        )

    async def _get(self, key: str) -> Record | None:
        row = await self._db.fetchrow("store read", self._sql.get, key.encode(), read=True)
        return None if row is None else self._record(row)

    async def _get_many(self, keys: list[str]) -> dict[str, Record]:
        rows = await self._db.fetch(
            "store read", self._sql.get_many, [k.encode() for k in keys], read=True
        )
        found = {}
        for row in rows:
            record = self._record(row)
            found[record.key] = record
        return found

    async def _exists(self, key: str) -> bool:
        found = await self._db.fetchval("store read", self._sql.exists, key.encode(), read=True)
        return bool(found)

    async def _keys(self, prefix: str, suffix: str, limit: int | None, offset: int) -> list[str]:
        low = prefix.encode()
        high = upper_bound(low) if low else None
        args: list[object] = [low]
        if high is not None:
            args.append(high)
        if suffix:
            args.append(suffix.encode())
        if limit is not None:
            args.append(limit)
        if offset:
            args.append(offset)
        sql = self._sql.keys(high is not None, bool(suffix), limit is not None, bool(offset))
        rows = await self._db.fetch("store list", sql, *args, read=True)
        return [bytes(row[0]).decode("utf-8", "replace") for row in rows]

    # -- expiry --------------------------------------------------------------------

    async def _sweep(self) -> float | None:
        """Turn expired rows into tombstones (announcing each), purge old tombstones;
        the next expiry time known."""
        db = self._conn
        if db is None:
            return None
        sql = self._sql
        while await db.fetchval("store expire", sql.any_expired):
            if not await db.run("store expire", self._expire_batch):
                break
        now = time.monotonic()
        if now - self._last_purge >= min(60.0, self._retention):
            self._last_purge = now
            await db.execute("store purge", sql.purge, self._retention)
        found = await db.fetchval("store expire", sql.next_expiry)
        return None if found is None else float(found) + 0.01

    async def _expire_batch(self, conn: asyncpg.Connection) -> int:
        sql = self._sql
        timeout = self._endpoint.timeouts.request
        async with conn.transaction():
            top = await conn.fetchval(sql.lock_counter, timeout=timeout)
            rows = await conn.fetch(sql.expired, timeout=timeout)
            if not rows:
                return 0
            keys = [bytes(r[0]) for r in rows]
            revisions = list(range(top + 1, top + len(keys) + 1))
            await conn.execute(sql.expire, keys, revisions, timeout=timeout)
            await conn.execute(sql.set_counter, revisions[-1], timeout=timeout)
            payloads = [f"e{rev} - {_b64(k)}" for k, rev in zip(keys, revisions, strict=True)]
            await conn.execute(sql.notify_many, payloads, timeout=timeout)
        return len(keys)

    # -- watch ---------------------------------------------------------------------

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        watch = PostgresWatch(
            self._db, self._sql, self._table, prefix.encode(), self._codec, emit, fail
        )
        await watch.start()
        return watch.stop
