"""The connection pool of one PostgreSQL endpoint on one event loop.

asyncpg's own pool costs more than a statement on a local server: every
`release` goes through `asyncio.shield` (a new task) and, by default, a reset
query (a second round trip), so a statement through it took two to three
times as long as the same statement on a bare connection (the `postgres`
bench). Here a free connection is handed out and taken back without awaiting
anything; waiting happens only when every connection is busy.

Rules:

- at most `size` connections, opened on demand with the endpoint's
  `connect()` (which bounds the time to connect);
- one task uses a connection at a time; `release(conn, reusable)` takes it
  back. A connection that saw anything but success or an error the server
  reported (a timeout, a cancellation, a lost socket), or that is still in a
  transaction, is closed instead of reused: its protocol state is unknown;
- `expire()` (after a lost connection: the server likely went away) closes the
  idle connections and marks the busy ones to be closed when released;
- a connection idle for `idle_lifetime` seconds is closed (checked whenever
  one is released), so a quiet process does not hold server slots.

No session state needs resetting between users: microstd never changes a
pooled connection's session (no SET, no LISTEN, no cursors kept, only
transaction-scoped advisory locks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg

from microstd.errors import Closed

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Connections handed out one task at a time (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        *,
        idle_lifetime: float = 60.0,
        close_timeout: float = 5.0,
    ) -> None:
        self._connect = connect
        self.size = size
        self._idle_lifetime = idle_lifetime
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        # Idle connections, the most recently used last (taken first: warm caches),
        # each with the loop time it went idle.
        self._idle: deque[tuple[asyncpg.Connection, float]] = deque()
        self._generation: dict[asyncpg.Connection, int] = {}
        self._current = 0
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_count(self) -> int:
        """Connections open or being opened (tests, logs)."""
        return len(self._generation) + self._opening

    @property
    def idle_count(self) -> int:
        """Connections waiting to be used (tests, logs)."""
        return len(self._idle)

    def take(self) -> asyncpg.Connection | None:
        """An idle connection for this task alone, without waiting; None if there is none
        (then `acquire`). Give it back with `release`."""
        idle = self._idle
        while idle:
            conn, _ = idle.pop()
            if not conn.is_closed():
                return conn
            self._forget(conn)
        return None

    async def acquire(self, timeout: float) -> asyncpg.Connection:
        """A connection for this task alone; `asyncio.TimeoutError` if none is free
        within `timeout` seconds. Give it back with `release`."""
        deadline: float | None = None
        while True:
            if self._closed:
                raise Closed("PostgreSQL pool is closed")
            conn = self.take()
            if conn is not None:
                return conn
            if self.open_count < self.size:
                return await self._open()
            if deadline is None:
                deadline = self._loop.time() + timeout
            left = deadline - self._loop.time()
            if left <= 0:
                raise asyncio.TimeoutError(f"no free connection within {timeout:g}s")
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(f"no free connection within {timeout:g}s") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def _open(self) -> asyncpg.Connection:
        self._opening += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._opening -= 1
            self._wake()  # its slot is free again
            raise
        self._opening -= 1
        if self._closed:
            conn.terminate()
            raise Closed("PostgreSQL pool is closed")
        self._generation[conn] = self._current
        return conn

    def release(self, conn: asyncpg.Connection, reusable: bool) -> None:
        """Take `conn` back: kept for the next user if `reusable` and still sound."""
        keep = (
            reusable
            and not self._closed
            and not conn.is_closed()
            and not conn.is_in_transaction()
            and self._generation.get(conn) == self._current
        )
        if keep:
            now = self._loop.time()
            self._idle.append((conn, now))
            self._close_stale(now)
        else:
            self._forget(conn)
            conn.terminate()
        self._wake()

    def _close_stale(self, now: float) -> None:
        idle = self._idle
        while len(idle) > 1 and now - idle[0][1] > self._idle_lifetime:
            conn, _ = idle.popleft()
            self._forget(conn)
            self._spawn_close(conn)

    def _forget(self, conn: asyncpg.Connection) -> None:
        self._generation.pop(conn, None)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _spawn_close(self, conn: asyncpg.Connection) -> None:
        task = self._loop.create_task(_close(conn, self._close_timeout))
        task.add_done_callback(_quiet)

    def expire(self) -> None:
        """Close every idle connection; busy ones are closed when released."""
        self._current += 1
        while self._idle:
            conn, _ = self._idle.pop()
            self._forget(conn)
            conn.terminate()
        self._wake()

    async def close(self) -> None:
        """Close the idle connections (each within the close timeout, else terminated);
        busy ones are closed when released; waiters get `Closed`. Idempotent."""
        self._closed = True
        idle = [conn for conn, _ in self._idle]
        self._idle.clear()
        for conn in idle:
            self._forget(conn)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # it wakes, sees the pool closed, raises Closed
        await asyncio.gather(*(_close(c, self._close_timeout) for c in idle))

    def terminate(self) -> None:
        """Close everything at once, busy connections included."""
        self._closed = True
        for conn in list(self._generation):
            conn.terminate()
        self._generation.clear()
        self._idle.clear()


async def _close(conn: asyncpg.Connection, timeout: float) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout)
    except BaseException:
        conn.terminate()


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # _close never raises; read it so nothing is logged
