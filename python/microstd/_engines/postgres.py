"""PostgreSQL: the one client setup every area uses (asyncpg).

    endpoint, rest = PostgresEndpoint.from_url(parsed, options, area=("table",))
    conn = await acquire(endpoint)          # one pool per URL and settings, per event loop
    rev = await conn.fetchval("store write", "SELECT ...", key, read=False)
    await release(conn)

What it owns:

- **URL**: ``postgresql://[user[:password]@]host[:port]/database[?options]``
  (``postgres://`` too). The password never appears in a repr, a log line or
  an error message (`endpoint.redacted`). Query options other than the
  engine's and the area's go to asyncpg: its connection options (``sslmode``,
  ``application_name``...) and, for any other name, a server setting for every
  session (``?search_path=app`` puts microstd's tables in schema ``app``).
- **Timeouts** (seconds; a query option or a keyword option overrides them):
  ``connect_timeout=5`` to open a connection (TCP, TLS, authentication);
  ``timeout=5`` for any one statement, from sending it to its result (asyncpg
  asks the server to cancel a statement that runs past it), and for waiting
  for a free pooled connection; ``ping_interval=10``: the listening connection
  (watches, subscriptions) runs ``SELECT 1`` that often, and one that does not
  answer within ``timeout`` is declared lost and replaced.
- **Pool**: one pool per endpoint per event loop (`_postgres_pool`), shared by
  every area that names the same URL and settings (reference counted by
  `acquire` / `release`); ``pool_size=10`` connections at most, opened on
  demand, closed after a minute idle. A free connection is handed out without
  awaiting anything and taken back without a reset query, so a statement is
  one round trip (asyncpg's own pool adds a second, and a task). Statements
  are prepared once per connection and reused (asyncpg's statement cache,
  ``statement_cache_size=100``; set it to 0 behind PgBouncer in transaction
  mode).
- **No blind retry of writes.** A statement that failed because its connection
  was lost raises `ConnectionFailed`, and the pool drops every idle connection
  (they all went with the server). A *read* (``read=True``) is tried once more
  on a fresh connection, so the first read after a server restart succeeds; a
  write is not (it may have been applied: a retried conditional write would
  report a `Conflict` for its own first attempt).
- **Error mapping** (`errors`): connection refused or lost, a timeout, a
  statement cancelled for time, a server shutting down, starting up, out of
  connections, or read-only (a standby) -> `ConnectionFailed`; refused
  credentials -> `ConnectionFailed` saying so; any other server error ->
  `MicrostdError` naming the operation and the SQLSTATE.
- **Schema** (`PostgresConnection.schema`): each area's tables are created on
  first use, in one transaction under an advisory lock (so processes starting
  together do not race), and their version recorded in ``microstd_schema``;
  a database whose tables are newer than this microstd raises `NotSupported`.
- **Notifications** (`Listener`): one dedicated connection per endpoint per
  loop LISTENs for every area. When it is lost (or fails its ping) each
  subscriber is told, the listener reconnects (without limit, backing off to
  ``reconnect_time_wait`` x 8) and LISTENs again, then calls each subscriber's
  resync hook so it can catch up on what it missed.

Ambiguity: a write that raised `ConnectionFailed` after it was sent (a timeout,
a connection lost while waiting for the result) may have been committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import asyncpg
import asyncpg.exceptions as pgexc

from microstd._backends import ParsedURL, parse_url, redact, redact_text
from microstd._engines._common import Shared, Timeouts, seconds_option, split_options
from microstd._engines._postgres_pool import ConnectionPool
from microstd.errors import Closed, ConnectionFailed, InvalidArgument, MicrostdError, NotSupported

__all__ = [
    "Listener",
    "PostgresConnection",
    "PostgresEndpoint",
    "acquire",
    "errors",
    "identifier",
    "release",
]

log = logging.getLogger("microstd.postgres")

T = TypeVar("T")

#: The engine's own options, taken out of the URL before asyncpg sees it.
ENGINE_OPTIONS = (*Timeouts.OPTIONS, "pool_size", "statement_cache_size", "reconnect_time_wait")

#: The table that records each area's schema version.
SCHEMA_TABLE = "microstd_schema"
# pg_advisory_xact_lock key serialising schema changes ("microstd" in ASCII).
_SCHEMA_LOCK = 0x6D6963726F737464

_UNREACHABLE = (
    pgexc.PostgresConnectionError,  # class 08: connection exceptions
    pgexc.OperatorInterventionError,  # class 57: shutdown, cannot connect now, cancelled
    pgexc.InsufficientResourcesError,  # class 53: too many connections, out of memory
    pgexc.ReadOnlySQLTransactionError,  # a standby, or a primary being demoted
    OSError,  # refused, reset, unreachable; TimeoutError is one
    asyncio.TimeoutError,
)


def identifier(name: str, *, what: str = "table") -> str:
    """`name` if it is a plain lower-case SQL identifier short enough to derive others from.

    Names are put into SQL text (tables cannot be bind parameters), so only
    ``[a-z_][a-z0-9_]*`` of at most 40 characters is accepted.
    """
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 40
        or not (name[0].isascii() and (name[0].isalpha() or name[0] == "_"))
        or not all(c.isascii() and (c.isdigit() or c.islower() or c == "_") for c in name)
    ):
        raise InvalidArgument(
            f"{what} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 40"
            f" characters), got {name!r}"
        )
    return name


def _int_option(name: str, value: object, low: int) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an int, got {value!r}")
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an int, got {value!r}") from None
    if number < low:
        raise InvalidArgument(f"{name} must be at least {low}, got {number}")
    return number


@dataclass(frozen=True)
class PostgresEndpoint:
    """Which database, as whom, and how long to wait for it.

    `dsn` is what asyncpg gets (the engine's and the area's options removed);
    `redacted` is safe to show. Equal endpoints share one pool.
    """

    dsn: str
    redacted: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    pool_size: int = 10
    statement_cache_size: int = 100
    reconnect_time_wait: float = 0.25

    @classmethod
    def from_url(
        cls,
        url: ParsedURL | str,
        options: Mapping[str, Any] | None = None,
        *,
        area: Iterable[str] = (),
    ) -> tuple[PostgresEndpoint, dict[str, Any]]:
        """The endpoint a URL names, and the area's options.

        The engine options come from the query or `options` (keywords win). The
        options named in `area` are taken out of the query and returned, with
        every keyword option that is not the engine's, for the area to use or
        refuse; the rest of the query stays in the DSN for asyncpg.
        """
        parsed = url if isinstance(url, ParsedURL) else parse_url(url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise InvalidArgument(f"not a PostgreSQL URL: {parsed.redacted!r}")
        options = dict(options or {})
        engine, query = split_options(parsed.query, options, ENGINE_OPTIONS)
        mine, query = split_options(query, {}, set(area))
        for name in ENGINE_OPTIONS:
            options.pop(name, None)
        mine.update(options)
        base = parsed.raw.split("?", 1)[0]
        if query:
            base += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        pool_size = engine.get("pool_size")
        cache = engine.get("statement_cache_size")
        wait = engine.get("reconnect_time_wait")
        endpoint = cls(
            base,
            redact(base),
            Timeouts.from_options(engine),
            10 if pool_size is None else _int_option("pool_size", pool_size, 1),
            100 if cache is None else _int_option("statement_cache_size", cache, 0),
            0.25 if wait is None else seconds_option("reconnect_time_wait", wait),
        )
        return endpoint, mine

    def __repr__(self) -> str:
        return f"PostgresEndpoint({self.redacted!r})"

    async def connect(self) -> asyncpg.Connection:
        """A new connection outside any pool (most callers want `acquire`)."""
        with errors(self, "connect"):
            conn: asyncpg.Connection = await asyncpg.connect(
                self.dsn,
                timeout=self.timeouts.connect,
                command_timeout=self.timeouts.request,
                statement_cache_size=self.statement_cache_size,
            )
        return conn


def _fail(endpoint: PostgresEndpoint, what: str, exc: BaseException, why: str) -> NoReturn:
    detail = redact_text(str(exc)) or type(exc).__name__
    raise ConnectionFailed(f"{what}: PostgreSQL at {endpoint.redacted} {why}: {detail}") from exc


def _lost(exc: BaseException) -> bool:
    """True when `exc` means the connection it ran on is gone."""
    if isinstance(exc, pgexc.InternalClientError):
        return True
    if isinstance(exc, pgexc.InterfaceError):
        return "closed" in str(exc) or "connection" in str(exc)
    gone = (pgexc.PostgresConnectionError, pgexc.AdminShutdownError, pgexc.CrashShutdownError)
    return isinstance(exc, (*gone, OSError))


@contextlib.contextmanager
def errors(endpoint: PostgresEndpoint, what: str) -> Iterator[None]:
    """Translate asyncpg's exceptions raised in the block into `microstd.errors`.

    `what` names the operation ("store write") so the message says what failed.
    microstd's own exceptions raised in the block pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        _translate(endpoint, what, exc)


def _translate(endpoint: PostgresEndpoint, what: str, exc: Exception) -> NoReturn:
    """Raise `exc` as `microstd.errors` say (see `errors`)."""
    try:
        raise exc
    except MicrostdError:
        raise
    except pgexc.InvalidAuthorizationSpecificationError as exc:
        _fail(endpoint, what, exc, "refused the credentials")
    except pgexc.QueryCanceledError as exc:
        _fail(endpoint, what, exc, "did not answer in time")
    except _UNREACHABLE as exc:
        _fail(endpoint, what, exc, "unreachable")
    except pgexc.InternalClientError as exc:
        # asyncpg's protocol state after a connection died mid-operation (seen when
        # the server is killed): the connection is unusable, the pool replaces it.
        _fail(endpoint, what, exc, "connection broken")
    except pgexc.InterfaceError as exc:
        if _lost(exc):
            _fail(endpoint, what, exc, "unreachable")
        raise MicrostdError(f"{what}: PostgreSQL client error: {redact_text(str(exc))}") from exc
    except pgexc.PostgresError as exc:
        code = getattr(exc, "sqlstate", None) or "?"
        raise MicrostdError(
            f"{what}: PostgreSQL answered an error ({code}): {redact_text(str(exc))}"
        ) from exc


class PostgresConnection:
    """The shared pool of one endpoint, its schema bookkeeping and its listener."""

    def __init__(self, endpoint: PostgresEndpoint) -> None:
        self.endpoint = endpoint
        self.pool: ConnectionPool | None = None
        self._schemas: set[str] = set()
        self._listener: Listener | None = None

    def __repr__(self) -> str:
        return f"PostgresConnection({self.endpoint.redacted!r})"

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """`errors(self.endpoint, what)`."""
        return errors(self.endpoint, what)

    async def open(self) -> None:
        """Make the pool (no connection yet: the first statement opens one)."""
        e = self.endpoint
        self.pool = ConnectionPool(e.connect, e.pool_size, close_timeout=e.timeouts.request)

    async def close(self) -> None:
        """Close the listener and the pool; never raises."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        pool, self.pool = self.pool, None
        if pool is not None:
            try:
                await pool.close()
            except Exception:
                pool.terminate()

    def _pool(self) -> ConnectionPool:
        pool = self.pool
        if pool is None:
            raise Closed("PostgreSQL pool is closed")
        return pool

    def _failed(self, what: str, exc: Exception) -> NoReturn:
        """Raise `exc` translated; a lost connection first expires the pool's others
        (they all went with the server)."""
        try:
            _translate(self.endpoint, what, exc)
        except ConnectionFailed as failed:
            if self.pool is not None and _lost(failed.__cause__ or failed):
                self.pool.expire()
            raise

    @contextlib.asynccontextmanager
    async def connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for several statements (a transaction: `conn.transaction()`),
        with the error mapping around the whole block."""
        pool = self._pool()
        t = self.endpoint.timeouts
        try:
            conn = await pool.acquire(t.connect + t.request)
        except Exception as exc:
            self._failed(what, exc)
        reusable = False
        try:
            yield conn
            reusable = True
        except pgexc.PostgresError as exc:
            reusable = True  # the server answered: the connection is sound
            self._failed(what, exc)
        except Exception as exc:
            self._failed(what, exc)
        finally:
            pool.release(conn, reusable)

    async def run(
        self,
        what: str,
        call: Callable[[asyncpg.Connection], Awaitable[T]],
        *,
        read: bool = False,
    ) -> T:
        """`await call(conn)` on a pooled connection; a read is tried again once, on a
        fresh connection, when the first one turned out to be lost."""
        for attempt in (0, 1):
            try:
                async with self.connection(what) as conn:
                    return await call(conn)
            except ConnectionFailed as exc:
                if not read or attempt or not _lost(exc.__cause__ or exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _one(
        self, method: str, what: str, sql: str, args: tuple[object, ...], read: bool
    ) -> Any:
        # The hot path of every single-statement call: `run` and `connection` inlined
        # (a context manager and a closure per statement cost a tenth of a local
        # round trip).
        pool = self._pool()
        t = self.endpoint.timeouts
        for attempt in (0, 1):
            conn = pool.take()  # a free connection: no await at all
            if conn is None:
                try:
                    conn = await pool.acquire(t.connect + t.request)
                except Exception as exc:
                    self._failed(what, exc)
            reusable = False
            try:
                result = await getattr(conn, method)(sql, *args, timeout=t.request)
                reusable = True
                return result
            except pgexc.PostgresError as exc:
                reusable = True
                self._failed(what, exc)
            except Exception as exc:
                try:
                    self._failed(what, exc)
                except ConnectionFailed as failed:
                    if not read or attempt or not _lost(failed.__cause__ or failed):
                        raise
            finally:
                pool.release(conn, reusable)
        raise AssertionError("unreachable")  # pragma: no cover

    # Plain functions returning `_one`'s coroutine: one frame less per statement.

    def fetch(
        self, what: str, sql: str, *args: object, read: bool = False
    ) -> Coroutine[Any, Any, list[Any]]:
        """The rows of one statement (prepared once per connection)."""
        return self._one("fetch", what, sql, args, read)

    def fetchrow(
        self, what: str, sql: str, *args: object, read: bool = False
    ) -> Coroutine[Any, Any, Any]:
        """The first row of one statement, or None."""
        return self._one("fetchrow", what, sql, args, read)

    def fetchval(
        self, what: str, sql: str, *args: object, read: bool = False
    ) -> Coroutine[Any, Any, Any]:
        """The first column of the first row of one statement, or None."""
        return self._one("fetchval", what, sql, args, read)

    def execute(self, what: str, sql: str, *args: object) -> Coroutine[Any, Any, str]:
        """Run one statement; its status text."""
        return self._one("execute", what, sql, args, False)

    async def ping(self, what: str = "connect") -> None:
        """Check the server answers; `ConnectionFailed` within the timeouts if not."""
        await self.fetchval(what, "SELECT 1", read=True)

    async def schema(self, name: str, version: int, ddl: str) -> None:
        """Create area `name`'s tables (`ddl`) unless recorded at `version` already.

        Runs once per pool; `NotSupported` if the database holds a newer version.
        """
        if name in self._schemas:
            return

        async def ensure(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ("
                    " name text PRIMARY KEY, version integer NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                )
                found = await conn.fetchval(
                    f"SELECT version FROM {SCHEMA_TABLE} WHERE name = $1", name
                )
                if found is None:
                    await conn.execute(ddl)
                    await conn.execute(
                        f"INSERT INTO {SCHEMA_TABLE} (name, version) VALUES ($1, $2)",
                        name,
                        version,
                    )
                elif found > version:
                    raise NotSupported(
                        f"PostgreSQL tables {name!r} are at schema version {found}; this"
                        f" microstd knows versions up to {version}: upgrade microstd"
                    )

        await self.run(f"{name} schema", ensure)
        self._schemas.add(name)

    def listener(self) -> Listener:
        """The endpoint's shared listening connection on this loop."""
        if self._listener is None:
            self._listener = Listener(self.endpoint)
        return self._listener


_shared: Shared[PostgresConnection] = Shared()


async def acquire(endpoint: PostgresEndpoint) -> PostgresConnection:
    """The shared pool for `endpoint` on the running loop. Pair every call with `release`."""

    async def open() -> PostgresConnection:
        conn = PostgresConnection(endpoint)
        await conn.open()
        return conn

    return await _shared.acquire(endpoint, open)


async def release(conn: PostgresConnection) -> None:
    """Give back a pool from `acquire`; the last user closes it."""

    async def close(c: PostgresConnection) -> None:
        await c.close()

    await _shared.release(conn.endpoint, close)


async def endpoint_connect(endpoint: PostgresEndpoint) -> asyncpg.Connection:
    """A new connection outside any pool, with the endpoint's timeouts (tests, tools)."""
    return await endpoint.connect()


def shared_count(endpoint: PostgresEndpoint) -> int:
    """How many users share `endpoint`'s pool on the running loop (tests)."""
    return _shared.count(endpoint)


# -- LISTEN / NOTIFY -------------------------------------------------------------------

Notify = Callable[[str], None]
Resync = Callable[[], None]
Lost = Callable[[ConnectionFailed], None]


class _Subscription:
    __slots__ = ("channel", "lost", "notify", "resync")

    def __init__(self, channel: str, notify: Notify, resync: Resync | None, lost: Lost | None):
        self.channel = channel
        self.notify = notify
        self.resync = resync
        self.lost = lost


class Listener:
    """One LISTEN connection shared by every watch and subscription of an endpoint.

    `listen(channel, notify, resync=None, lost=None)` returns once the server
    has run ``LISTEN channel`` (so every NOTIFY committed afterwards reaches
    `notify(payload)`, in commit order), and returns the coroutine function that
    stops it. When the connection is lost, or leaves a ping unanswered for
    `timeout`, `lost(exc)` is called; once a new connection LISTENs again,
    `resync()` is: notifications sent in between are gone, and a subscriber
    that must not miss changes reads them back from its tables. Callbacks run
    on the loop and must not block (queue the work).
    """

    def __init__(self, endpoint: PostgresEndpoint) -> None:
        self.endpoint = endpoint
        self._subs: list[_Subscription] = []
        self._db: asyncpg.Connection | None = None
        self._channels: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._broken = asyncio.Event()
        self._closed = False
        #: Times the connection was lost and replaced (tests, logs).
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """True while the listening connection is up."""
        return self._db is not None and not self._db.is_closed()

    async def listen(
        self,
        channel: str,
        notify: Notify,
        resync: Resync | None = None,
        lost: Lost | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """Deliver `channel`'s notifications to `notify`; see the class docstring."""
        if self._closed:
            raise Closed("PostgreSQL listener is closed")
        sub = _Subscription(channel, notify, resync, lost)
        async with self._lock:
            if self._db is None or self._db.is_closed():
                await self._connect()
            assert self._db is not None
            if channel not in self._channels:
                with errors(self.endpoint, "listen"):
                    await self._db.add_listener(channel, self._dispatch)
                self._channels.add(channel)
            self._subs.append(sub)
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._supervise())

        async def stop() -> None:
            with contextlib.suppress(ValueError):
                self._subs.remove(sub)
            if not self._subs:
                await self._drop_connection()

        return stop

    async def _connect(self) -> None:
        db = await self.endpoint.connect()
        db.add_termination_listener(lambda _conn: self._broken.set())
        self._db = db
        self._channels = set()
        self._broken.clear()

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for sub in list(self._subs):
            if sub.channel == channel:
                try:
                    sub.notify(payload)
                except Exception:
                    log.exception("PostgreSQL notification handler raised")

    async def _drop_connection(self) -> None:
        async with self._lock:
            if self._subs:
                return
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            db, self._db = self._db, None
            self._channels = set()
            if db is not None:
                await _close_quietly(db, self.endpoint.timeouts.request)

    async def close(self) -> None:
        """Stop listening for everyone and close the connection; idempotent."""
        self._closed = True
        self._subs.clear()
        await self._drop_connection()

    async def _supervise(self) -> None:
        t = self.endpoint.timeouts
        while self._subs:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._broken.wait(), t.ping_interval)
            if not self._subs:
                return
            db = self._db
            failure: BaseException | None = None
            if db is None or db.is_closed() or self._broken.is_set():
                failure = ConnectionError("connection closed")
            else:
                try:
                    await db.fetchval("SELECT 1", timeout=t.request)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    failure = exc
            if failure is None:
                continue
            await self._recover(failure)

    async def _recover(self, failure: BaseException) -> None:
        e = self.endpoint
        exc = ConnectionFailed(
            f"listen: PostgreSQL at {e.redacted} unreachable:"
            f" {redact_text(str(failure)) or type(failure).__name__}"
        )
        log.warning("PostgreSQL listening connection to %s lost: %s", e.redacted, exc)
        db, self._db = self._db, None
        if db is not None:
            db.terminate()
        for sub in list(self._subs):
            if sub.lost is not None:
                try:
                    sub.lost(exc)
                except Exception:
                    log.exception("PostgreSQL lost-connection handler raised")
        wait = e.reconnect_time_wait
        while self._subs and not self._closed:
            try:
                async with self._lock:
                    await self._connect()
                    assert self._db is not None
                    for channel in {s.channel for s in self._subs}:
                        with errors(e, "listen"):
                            await self._db.add_listener(channel, self._dispatch)
                        self._channels.add(channel)
            except MicrostdError as again:
                log.debug("PostgreSQL listener reconnection failed: %s", again)
                db, self._db = self._db, None
                if db is not None:
                    db.terminate()
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))
                wait = min(wait * 2, e.reconnect_time_wait * 8)
                continue
            self.reconnects += 1
            log.info("PostgreSQL listening connection to %s is back", e.redacted)
            for sub in list(self._subs):
                if sub.resync is not None:
                    try:
                        sub.resync()
                    except Exception:
                        log.exception("PostgreSQL resync handler raised")
            return


async def _close_quietly(db: asyncpg.Connection, timeout: float) -> None:
    try:
        await asyncio.wait_for(db.close(), timeout)
    except BaseException:
        db.terminate()
