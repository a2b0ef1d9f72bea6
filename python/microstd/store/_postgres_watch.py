"""One watch of a `PostgresStore`: notifications in commit order, and an exact resync.

Why it can be exact: every change takes its revision under one row lock, so
revisions are committed in increasing order, and NOTIFY delivers in commit
order. The watch keeps `last`, the highest revision it has accounted for.
A notification at or below `last` is old news and skipped; any other is
delivered (when its key is under the prefix) and moves `last` up. While the
listening connection is down nothing arrives; when it is back, one query
(``revision > last`` under the prefix, in revision order) returns every change
missed: the tombstones left by deletes and expiries included.

Everything runs on one task per watch, in order, so a resync and the live
notifications that follow it never interleave.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from microstd._engines import postgres as engine
from microstd.codec.base import Codec
from microstd.errors import ConnectionFailed, DecodeError, MicrostdError
from microstd.store._common import decode_record
from microstd.store._watch import Emit, Fail
from microstd.store.base import Event, EventKind

if TYPE_CHECKING:
    from microstd.store.postgres import _SQL

__all__ = ["PostgresWatch"]

log = logging.getLogger("microstd.store")

_KINDS: dict[str, EventKind] = {"p": "put", "d": "delete", "e": "expire"}
_STATE_KINDS: dict[int, EventKind] = {0: "put", 1: "delete", 2: "expire"}
# Between attempts to catch up while the server is away (seconds).
_RETRY = 0.5


class PostgresWatch:
    """The changes of keys under `prefix`, from `start()` on, handed to `emit`."""

    def __init__(
        self,
        db: engine.PostgresConnection,
        sql: _SQL,
        channel: str,
        prefix: bytes,
        codec: Codec,
        emit: Emit,
        fail: Fail,
    ) -> None:
        self._db = db
        self._sql = sql
        self._channel = channel
        self._prefix = prefix
        self._upper = _upper(prefix)
        self._codec = codec
        self._emit = emit
        self._fail = fail
        self._items: deque[str | None] = deque()  # a payload, or None for "resync"
        self._wake = asyncio.Event()
        self._stale = False
        self._last = 0
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Any = None

    async def start(self) -> None:
        """Returns once every change committed from now on will be delivered."""
        listener = self._db.listener()
        self._unlisten = await listener.listen(
            self._channel, self._on_notify, resync=self._on_resync, lost=self._on_lost
        )
        try:
            # LISTEN came first: whatever commits after this read is notified.
            self._last = int(await self._db.fetchval("store watch", self._sql.counter, read=True))
        except BaseException:
            await self._unlisten()
            raise
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            await unlisten()

    # -- callbacks from the listener (on the loop, must not block) ----------------------

    def _on_notify(self, payload: str) -> None:
        if not self._stale:  # while stale, the coming resync reads everything back
            self._items.append(payload)
            self._wake.set()

    def _on_lost(self, exc: ConnectionFailed) -> None:
        del exc
        self._stale = True

    def _on_resync(self) -> None:
        self._items.append(None)
        self._wake.set()

    # -- the watch's task -------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                while not self._items:
                    self._wake.clear()
                    await self._wake.wait()
                item = self._items.popleft()
                try:
                    if item is None:
                        self._stale = False
                        await self._catch_up()
                    else:
                        await self._notified(item)
                except ConnectionFailed as exc:
                    # The server went away mid-step: drop what comes until a
                    # catch-up (retried until it works) has read it all back.
                    log.debug("store watch: catching up later: %s", exc)
                    self._stale = True
                    self._items.clear()
                    await asyncio.sleep(_RETRY)
                    self._items.append(None)
        except _Ended as ended:
            self._fail(ended.error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end the watch, not hang it
            log.exception("store watch failed")
            self._fail(exc)

    async def _notified(self, payload: str) -> None:
        try:
            head, expires, rest = payload.split(" ", 2)
            kind = _KINDS[head[:1]]
            revision = int(head[1:])
            parts = rest.split(" ")
            key = base64.b64decode(parts[0], validate=True)
        except (ValueError, KeyError, IndexError, binascii.Error):
            log.warning("store watch: skipped a malformed notification (%d chars)", len(payload))
            return
        if revision <= self._last:
            return
        if not key.startswith(self._prefix):
            self._last = revision
            return
        name = key.decode("utf-8", "replace")
        if kind != "put":
            self._last = revision
            self._emit(Event(kind, name))
            return
        if len(parts) == 3 and parts[2] != "*":
            try:
                meta = base64.b64decode(parts[1], validate=True).decode() if parts[1] else ""
                data = base64.b64decode(parts[2], validate=True)
                record = decode_record(
                    self._codec,
                    name,
                    data,
                    metadata=meta,
                    revision=revision,
                    expires_at=None if expires == "-" else expires,
                )
            except (ValueError, binascii.Error, UnicodeDecodeError, DecodeError) as exc:
                log.warning("store watch: skipped a malformed put of %r: %s", name[:100], exc)
                self._last = revision
                return
            self._last = revision
            self._emit(Event("put", name, record))
            return
        # Too large for a notification: read it back at that revision. If it has
        # changed again since, this put is skipped; the newer change comes next.
        row = await self._db.fetchrow(
            "store watch", self._sql.at_revision, key, revision, read=True
        )
        self._last = revision
        if row is not None:
            self._put_row(row)

    async def _catch_up(self) -> None:
        floor = int(await self._db.fetchval("store watch", self._sql.floor, read=True))
        if floor > self._last:
            raise _Ended(
                ConnectionFailed(
                    "store watch: away too long; changes up to revision"
                    f" {floor} were purged (tombstone_retention): watch again"
                )
            )
        while True:
            rows = await self._db.fetch(
                "store watch",
                self._sql.changes,
                self._last,
                self._prefix,
                self._upper,
                read=True,
            )
            for row in rows:
                revision = int(row[3])
                if revision <= self._last:
                    continue
                self._last = revision
                kind = _STATE_KINDS.get(int(row[5]))
                name = bytes(row[0]).decode("utf-8", "replace")
                if kind == "put":
                    self._put_row(row)
                elif kind is not None:
                    self._emit(Event(kind, name))
            if len(rows) < 500:
                return

    def _put_row(self, row: Any) -> None:
        name = bytes(row[0]).decode("utf-8", "replace")
        try:
            record = decode_record(
                self._codec,
                name,
                bytes(row[1]) if row[1] is not None else None,
                metadata=row[2],
                revision=row[3],
                expires_at=row[4],
            )
        except MicrostdError as exc:
            log.warning("store watch: skipped a malformed record %r: %s", name[:100], exc)
            return
        self._emit(Event("put", name, record))


class _Ended(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _upper(prefix: bytes) -> bytes | None:
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
