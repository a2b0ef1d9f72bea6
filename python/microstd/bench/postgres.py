"""`microstd bench postgres`: the `postgresql://` store against asyncpg doing the same SQL
by hand, and against the `redis://` store for scale.

It needs servers, so plain `microstd bench` leaves it out; name it to run it:

    MICROSTD_BENCH_POSTGRES=postgresql://app@127.0.0.1:5432/app \\
    MICROSTD_BENCH_REDIS=redis://127.0.0.1:6379/15 microstd bench postgres

(the Redis rows only with ``MICROSTD_BENCH_REDIS``). The bench creates a table
of its own (``microstd_bench_<random>``) and drops it at the end; on Redis it
writes keys under ``microstd-bench-<random>/`` and deletes them.

Cases: read a small record, write one, list 100 keys of 10,000 by prefix,
and a conditional write (``if_revision``, each write on the revision the
last one returned). In each, the rows do the same work:

- ``microstd postgresql://``: the store's async API (validation, the codec,
  a `Record`, the pool, a prepared statement);
- ``asyncpg pool, same SQL by hand``: the statements the store sends, through
  an asyncpg pool of the same size (asyncpg's defaults), with the value encoded /
  decoded by the same codec: what an application would write without microstd;
- ``asyncpg connection, same SQL``: the same on one connection, no pool: the
  least work by hand (the ratio in the summary is against the faster of the two);
- ``microstd redis:// (scale)``: the same calls on the Redis store (shown, not
  in the area's summary: another engine).

Every timed call makes `SEQUENTIAL` operations one after another on a private
event loop, so the loop's start and stop (paid alike by every row) is spread
over them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import Awaitable, Callable
from typing import Any

from microstd import codec
from microstd.bench.runner import Case

__all__ = ["ENV_POSTGRES", "ENV_REDIS", "SEQUENTIAL", "Rig", "cases"]

AREA = "postgres"
#: The environment variables naming the servers.
ENV_POSTGRES = "MICROSTD_BENCH_POSTGRES"
ENV_REDIS = "MICROSTD_BENCH_REDIS"
#: Operations one after another per timed call.
SEQUENTIAL = 20
SMALL: dict[str, object] = {"user": "ada", "id": 1234, "active": True, "score": 9.5}
_PER_GROUP = 100
KINDS = ("microstd", "asyncpg", "asyncpg-conn", "redis")
LABELS = {
    "microstd": "microstd postgresql://",
    "asyncpg": "asyncpg pool, same SQL by hand",
    "asyncpg-conn": "asyncpg connection, same SQL",
    "redis": "microstd redis:// (scale)",
}
_ROLES = {"microstd": "core", "asyncpg": "peer", "asyncpg-conn": "peer", "redis": "core"}

Op = Callable[[], Awaitable[object]]


class Rig:
    """The stores, the asyncpg pool and their data, on one private event loop.

    `start()` is idempotent; `close()` drops what the bench wrote.
    """

    def __init__(self, postgres_url: str, redis_url: str | None, total: int) -> None:
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        self.total = total
        tag = os.urandom(4).hex()
        self.table = f"microstd_bench_{tag}"
        self.redis_prefix = f"microstd-bench-{tag}/"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ops: dict[tuple[str, str], Op] = {}
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self.prefix = f"g{(total // _PER_GROUP) // 2:03}/"
        self.dsn = ""

    def start(self) -> None:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            try:
                self.loop.run_until_complete(self._start())
            except BaseException:
                self.close()
                raise

    async def _start(self) -> None:
        import microstd.store

        store = microstd.store.open(self.postgres_url, table=self.table)
        await store.connect()
        self._closers.append(self._drop_table)
        self._closers.append(store.close)
        await self._fill(store, "")
        self._add_store_ops("microstd", store, "")
        await self._add_asyncpg_ops(store)
        await self._add_asyncpg_ops(store, pooled=False)
        if self.redis_url is not None:
            redis = microstd.store.open(self.redis_url)
            await redis.connect()
            self._closers.append(redis.close)
            self._closers.append(lambda: self._clear_redis(redis))
            await self._fill(redis, self.redis_prefix)
            self._add_store_ops("redis", redis, self.redis_prefix)

    async def _fill(self, store: Any, base: str) -> None:
        batch: dict[str, object] = {}
        for i in range(self.total):
            batch[f"{base}g{i // _PER_GROUP:03}/{i % _PER_GROUP:02}"] = SMALL
            if len(batch) >= 1000:
                await store.write_many(batch)
                batch = {}
        if batch:
            await store.write_many(batch)
        await store.write(f"{base}small", SMALL)
        # One key per row that writes conditionally: each follows its own revisions.
        await store.write(f"{base}cas", SMALL)
        await store.write(f"{base}cas-asyncpg", SMALL)
        await store.write(f"{base}cas-asyncpg-conn", SMALL)

    def _add_store_ops(self, kind: str, store: Any, base: str) -> None:
        small, cas, prefix = f"{base}small", f"{base}cas", f"{base}{self.prefix}"
        state = {"rev": None}

        async def read() -> object:
            return (await store.read(small)).value

        async def write() -> object:
            return await store.write(small, SMALL)

        async def list_prefix() -> object:
            keys = await store.list(prefix)
            return [k[len(base) :] for k in keys]

        async def cas_write() -> object:
            rev = state["rev"]
            if rev is None:
                rev = (await store.read(cas)).revision
            state["rev"] = await store.write(cas, SMALL, if_revision=rev)
            return True

        self.ops.update(
            {
                ("read", kind): read,
                ("write", kind): write,
                ("list", kind): list_prefix,
                ("cas", kind): cas_write,
            }
        )

    async def _add_asyncpg_ops(self, store: Any, *, pooled: bool = True) -> None:
        import asyncpg

        from microstd.store.postgres import _SQL, tail, upper_bound

        sql = _SQL(self.table)
        endpoint = store._endpoint
        self.dsn = endpoint.dsn
        kind = "asyncpg" if pooled else "asyncpg-conn"
        pool: Any
        if pooled:
            # As an application would: a pool of the store's size, asyncpg's defaults.
            pool = await asyncpg.create_pool(
                endpoint.dsn, min_size=1, max_size=endpoint.pool_size, statement_cache_size=100
            )
        else:
            # The least work by hand: one connection, no pool at all.
            pool = await asyncpg.connect(endpoint.dsn, statement_cache_size=100)
        self._closers.insert(0, pool.close)
        msgpack = codec.get("application/msgpack")
        small, cas = b"small", f"cas-{kind}".encode()
        low = self.prefix.encode()
        high = upper_bound(low)
        list_sql = sql.keys(True, False, False, False)
        state: dict[str, int | None] = {"rev": None}

        async def read() -> object:
            row = await pool.fetchrow(sql.get, small)
            return msgpack.loads(bytes(row[1]))

        async def write() -> object:
            data = msgpack.dumps(SMALL)
            row = await pool.fetchrow(sql.put, small, data, "", None, tail(small, "", data))
            return int(row[0])

        async def list_prefix() -> object:
            rows = await pool.fetch(list_sql, low, high)
            return [bytes(r[0]).decode() for r in rows]

        async def cas_write() -> object:
            rev = state["rev"]
            if rev is None:
                rev = int((await pool.fetchrow(sql.get, cas))[3])
            data = msgpack.dumps(SMALL)
            row = await pool.fetchrow(
                sql.put_revision, cas, data, "", None, tail(cas, "", data), rev
            )
            if row is None:
                raise RuntimeError("conditional write by hand lost its revision")
            state["rev"] = int(row[0])
            return True

        self.ops.update(
            {
                ("read", kind): read,
                ("write", kind): write,
                ("list", kind): list_prefix,
                ("cas", kind): cas_write,
            }
        )

    async def _drop_table(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {self.table}, {self.table}_counters")
            await conn.execute("DELETE FROM microstd_schema WHERE name = $1", f"store:{self.table}")
        finally:
            await conn.close()

    async def _clear_redis(self, store: Any) -> None:
        for key in await store.list(self.redis_prefix):
            await store.delete(key)

    def sequential(self, name: str, kind: str) -> list[object]:
        """`SEQUENTIAL` operations `name` of `kind`, one after another."""
        self.start()
        assert self.loop is not None
        op = self.ops[(name, kind)]

        async def many() -> list[object]:
            return [await op() for _ in range(SEQUENTIAL)]

        return self.loop.run_until_complete(many())

    def close(self) -> None:
        """Drop the bench's table and keys, close everything (idempotent)."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            for closer in reversed(self._closers):
                loop.run_until_complete(closer())
        finally:
            self._closers.clear()
            self.ops.clear()
            loop.close()


def _checks(total: int) -> dict[str, Callable[[object], bool]]:
    del total

    def read(r: object) -> bool:
        return r == [SMALL] * SEQUENTIAL

    def write(r: object) -> bool:  # a revision per write
        return isinstance(r, list) and len(r) == SEQUENTIAL and None not in r

    def listed(r: object) -> bool:
        return isinstance(r, list) and all(isinstance(x, list) and len(x) == _PER_GROUP for x in r)

    def cas(r: object) -> bool:
        return r == [True] * SEQUENTIAL

    return {"read": read, "write": write, "list": listed, "cas": cas}


def cases(quick: bool, postgres_url: str | None = None, redis_url: str | None = None) -> list[Case]:
    """Read, write, list and CAS on `postgres_url` (default: $MICROSTD_BENCH_POSTGRES),
    with Redis rows when `redis_url` (default: $MICROSTD_BENCH_REDIS) is set."""
    postgres_url = postgres_url or os.environ.get(ENV_POSTGRES)
    redis_url = redis_url or os.environ.get(ENV_REDIS)
    if not postgres_url:
        raise RuntimeError(
            f"the postgres bench needs a server: set {ENV_POSTGRES}=postgresql://USER@HOST:PORT/DB"
            f" (a database it may create a table in), and {ENV_REDIS}=redis://HOST:PORT/DB for"
            " the Redis rows"
        )
    total = 2_000 if quick else 10_000
    rig = Rig(postgres_url, redis_url, total)
    checks = _checks(total)
    titles = {
        "read": "read a small record",
        "write": "write a small record",
        "list": f"list 100 keys of {total:,} by prefix",
        "cas": "conditional write (if_revision)",
    }
    kinds = [k for k in KINDS if k != "redis" or redis_url]
    out: list[Case] = []
    for name, title in titles.items():
        for kind in kinds:
            out.append(
                Case(
                    AREA,
                    title,
                    f"{name}: {kind}",
                    kind,
                    functools.partial(rig.sequential, name, kind),
                    baseline=kind == "asyncpg-conn",
                    label=LABELS[kind],
                    role=_ROLES[kind],
                    in_summary=kind != "redis",
                    ops_per_call=SEQUENTIAL,
                    check=checks[name],
                    setup=rig.start,
                )
            )
    # The rig lives across the cases; the last one stops it.
    out[-1] = dataclasses.replace(out[-1], teardown=rig.close)
    return out
