"""`NetworkStore`: the store semantics every disk and network backend shares, written once.

A backend (`file`, `redis`, `nats`, `s3`) writes only its primitives, as the
registry's backends do; the base does the rest the same way for all of them:
argument checks (keys, TTL, metadata, paging) before any I/O, encoding,
`Conflict` messages, connecting on first use, `Closed` after `close()`, the
watch stream (`microstd.store._watch.WatchStream`) and the order of writes and
watches (a write waits until every watch being set up is live).

Primitives (all async; `key` is a valid key, `data` the encoded value):

    _open()                                   connect; ConnectionFailed if the server is away
    _shutdown()                               disconnect (watches have ended by then)
    _put(put: Put) -> Revision | None         store; None when put's condition does not hold
    _get(key) -> Record | None                the live record, or None
    _remove(key) -> bool                      delete; True if a live record was deleted
    _keys(prefix, suffix, limit, offset)      live keys, sorted, filtered, then paged

and, where the backend does better than the default:

    _get_many(keys) -> dict[str, Record]      default: `_get` each key
    _put_many(items, ttl, expires_at)         default: `_put` each, put back on failure
                                              (see `NetworkStore.write_many`); a backend
                                              with transactions writes the batch in one
    _remove_if(key, revision) -> bool         delete only while `key` is at `revision`;
                                              default: `_get`, compare, `_remove` (racy:
                                              a backend with a conditional delete overrides)
    _remove_many(keys) -> int                 default: `_remove` each key
    _exists(key) -> bool                      default: `_get`
    _check_key(key)                           extra key rules (length limits), before any I/O
    _subscribe(prefix, emit, fail)            the change feed; without it `watch` raises
                                              NotSupported(`no_watch`)
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import functools
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from microstd.codec.base import Codec
from microstd.errors import Closed, Conflict, ConnectionFailed, NotFound, NotSupported
from microstd.store._common import (
    encode_value,
    key_bytes,
    resolve_codec,
    validate_paging,
)
from microstd.store._watch import Emit, Fail, Unsubscribe, WatchStream, close_streams, settle
from microstd.store.base import (
    Event,
    Record,
    Revision,
    Store,
    typed_record,
    typed_records,
    validate_metadata,
    validate_ttl,
)

__all__ = ["NetworkStore", "Put"]

_log = logging.getLogger("microstd.store")


def _add_note(exc: BaseException, note: str) -> None:
    """`exc.add_note(note)`, also on Python 3.10 (where tracebacks do not show it)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Put:
    """One write, checked and encoded: what `_put` stores.

    `ttl` is seconds (None for none) and `expires_at` the matching epoch time.
    At most one condition is set: `if_revision` (store only if the current live
    revision equals it) or `if_absent` (store only if no live record exists).
    """

    key: str
    data: bytes
    metadata: dict[str, str]
    ttl: float | None
    expires_at: float | None
    if_revision: Revision | None = None
    if_absent: bool = False

    @property
    def conditional(self) -> bool:
        return self.if_revision is not None or self.if_absent

    def conflict(self) -> Conflict:
        """The `Conflict` this write raises when its condition does not hold."""
        if self.if_revision is not None:
            return Conflict(f"key {self.key!r} is not at revision {self.if_revision!r}")
        return Conflict(f"key {self.key!r} already exists")


class NetworkStore(Store, abc.ABC):
    """A store whose backend writes only primitives (see the module docstring)."""

    #: Why `watch` is not supported, for backends without `_subscribe`.
    no_watch: str | None = None

    def __init__(self, *, codec: object = None) -> None:
        self._codec: Codec = resolve_codec(codec)
        self._closed = False
        self._opened = False
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self._streams: set[WatchStream] = set()

    # -- primitives ------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _shutdown(self) -> None: ...

    @abc.abstractmethod
    async def _put(self, put: Put) -> Revision | None: ...

    @abc.abstractmethod
    async def _get(self, key: str) -> Record | None: ...

    @abc.abstractmethod
    async def _remove(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def _keys(
        self, prefix: str, suffix: str, limit: int | None, offset: int
    ) -> builtins.list[str]: ...

    def _check_key(self, key: str) -> None:
        """Backend-specific key rules beyond the contract's (raise `InvalidKey`)."""

    async def _get_many(self, keys: builtins.list[str]) -> dict[str, Record]:
        found: dict[str, Record] = {}
        for key in keys:
            record = await self._get(key)
            if record is not None:
                found[key] = record
        return found

    async def _put_many(
        self, items: dict[str, bytes], ttl: float | None, expires_at: float | None
    ) -> dict[str, Revision]:
        """One `_put` per key; when one fails, what was written is put back (see
        `write_many`), then the error propagates."""
        if not items:
            return {}
        # Read before writing: a record that cannot be decoded (so could not be put
        # back) fails the batch here, before anything is written.
        previous = await self._get_many(builtins.list(items))
        written: dict[str, Revision] = {}
        try:
            for key, data in items.items():
                rev = await self._put(Put(key, data, {}, ttl, expires_at))
                assert rev is not None  # unconditional
                written[key] = rev
        except BaseException as exc:
            failed = next(k for k in items if k not in written)
            left, unsure = await self._undo_batch(
                written, failed, items[failed], expires_at, previous
            )
            if left:
                _add_note(
                    exc,
                    f"write_many: {len(left)} key(s) could not be put back and may keep"
                    f" the batch's value: {left}",
                )
            if unsure:
                _add_note(
                    exc,
                    f"write_many: the failed write of {failed!r} may still be applied"
                    " (ambiguous: its reply was lost or it may land late; read it to see)",
                )
            raise
        return written

    async def _undo_batch(
        self,
        written: dict[str, Revision],
        failed: str,
        data: bytes,
        expires_at: float | None,
        previous: Mapping[str, Record],
    ) -> tuple[builtins.list[str], bool]:
        """Undo a failed batch: each key written (at `written[key]`), and `failed` if
        its write was applied after all (a lost reply), goes back to its `previous`
        record, or is deleted if it had none; only while it still holds this batch's
        write, so a newer write by someone else stays. Stops at the first lost
        connection. Returns the keys that may still hold the batch's value, and
        whether `failed` (when not among them) may still be applied: a read showing
        the old record does not prove its write will not land later (a replicated
        bucket may commit it after the client's timeout), so only a failed write
        seen applied and then undone is certain."""
        todo: builtins.list[tuple[str, Revision | None]] = builtins.list(written.items())
        todo.append((failed, None))
        left: builtins.list[str] = []
        unsure = False
        for i, (key, rev) in enumerate(todo):
            try:
                if rev is None:
                    rev = await self._applied_anyway(key, data, expires_at, previous.get(key))
                    if rev is None:
                        unsure = True  # not seen applied (yet): it may still land
                        continue
                await self._restore(key, rev, previous.get(key))
            except ConnectionFailed:
                left += [k for k, _ in todo[i:]]
                _log.error(
                    "write_many: the connection was lost while putting back a failed batch;"
                    " %d key(s) may keep the batch's value: %r",
                    len(left),
                    left,
                )
                return left, False
            except Exception:  # this key only; the batch's own error is what propagates
                _log.exception("write_many: could not put %r back after a failed batch", key)
                left.append(key)
        return left, unsure

    async def _applied_anyway(
        self, key: str, data: bytes, expires_at: float | None, old: Record | None
    ) -> Revision | None:
        """The revision of the batch's write of `key` if it was applied although its
        call failed (the record is what the batch sent, not what was there)."""
        current = await self._get(key)
        if current is None or (old is not None and current.revision == old.revision):
            return None
        if current.metadata or current.expires_at != expires_at:
            return None
        ours = current.value == self._codec.loads(data)
        return current.revision if ours or self._codec.dumps(current.value) == data else None

    async def _restore(self, key: str, rev: Revision, old: Record | None) -> None:
        """`key` back to `old` (deleted if None or expired by now), if still at `rev`."""
        ttl = None if old is None or old.expires_at is None else old.expires_at - time.time()
        if old is None or (ttl is not None and ttl <= 0):
            await self._remove_if(key, rev)
            return
        data = encode_value(self._codec, old.value)
        await self._put(Put(key, data, dict(old.metadata), ttl, old.expires_at, if_revision=rev))

    async def _remove_if(self, key: str, revision: Revision) -> bool:
        # Racy: a write between the read and the delete is lost. Backends whose
        # server can make a delete conditional override this.
        current = await self._get(key)
        if current is None or current.revision != revision:
            return False
        return await self._remove(key)

    async def _remove_many(self, keys: builtins.list[str]) -> int:
        count = 0
        for key in keys:
            count += await self._remove(key)
        return count

    async def _exists(self, key: str) -> bool:
        return await self._get(key) is not None

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        raise NotSupported(self.no_watch or f"{type(self).__name__} cannot watch")

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        if self._closed:
            raise Closed("store is closed")
        if self._opened:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._closed:
                raise Closed("store is closed")
            if self._opened:
                return
            await self._open()
            self._loop = asyncio.get_running_loop()
            self._opened = True

    async def _ready(self) -> None:
        """Connect on first use; `Closed` after `close()`."""
        if self._closed:
            raise Closed("store is closed")
        if not self._opened:
            await self.connect()

    async def close(self) -> None:
        """End every watch, then disconnect; idempotent."""
        if self._closed:
            return
        self._closed = True
        await close_streams(self._streams)
        if self._opened:
            self._opened = False
            await self._shutdown()

    def _key(self, key: object) -> str:
        key_bytes(key)
        assert isinstance(key, str)
        self._check_key(key)
        return key

    # -- the store -------------------------------------------------------------

    async def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision:
        key = self._key(key)
        ttl = validate_ttl(ttl)
        meta = validate_metadata(metadata)
        data = encode_value(self._codec, value)
        expires_at = None if ttl is None else time.time() + ttl
        put = Put(key, data, meta, ttl, expires_at, if_revision, bool(if_absent))
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        await settle(self._pending)
        rev = await self._put(put)
        if rev is None:
            raise put.conflict()
        return rev

    async def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        """Every key checked and every value encoded before anything is written, so
        a bad key or an unencodable value stores nothing.

        A backend with transactions (`file`, `postgresql`) or scripts (`redis`)
        writes the batch at once: no reader sees part of it. The default `_put_many`
        (`nats`, `s3`, which have no multi-key transaction) is not atomic:

        - it reads each key's record, then writes one key at a time; a concurrent
          reader or watcher may see some keys new and others not yet;
        - if a write fails (a lost connection, a frozen server's timeout), each key
          already written goes back to its previous value, metadata and expiry (a
          new revision), or is deleted if it had none, and so does the failed key
          when its write landed after all (a lost reply: the record is exactly what
          the batch sent); readers and watchers see the batch, then its undoing;
        - the failed key is ambiguous unless its write was seen applied and then
          undone: a read showing the old record does not prove the write will not
          land later (a replicated bucket may commit it after the client's
          timeout), so the error then carries a note saying it may still be applied;
        - a key is put back only while it still holds the batch's write (a
          conditional write or delete on the batch's revision), so a newer write by
          someone else stays;
        - if putting back fails too (the connection is gone), it stops there: the
          keys not put back keep the batch's value, the batch's error propagates
          with a note naming them (``exc.__notes__``), and an error is logged;
        - a key whose stored record cannot be decoded fails the batch before
          anything is written (it could not be put back).
        """
        ttl = validate_ttl(ttl)
        prepared: dict[str, bytes] = {}
        for key, value in items.items():
            prepared[self._key(key)] = encode_value(self._codec, value)
        expires_at = None if ttl is None else time.time() + ttl
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        await settle(self._pending)
        return await self._put_many(prepared, ttl, expires_at)

    async def read(self, key: str, *, type: Any = None) -> Record:
        key = self._key(key)
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        record = await self._get(key)
        if record is None:
            raise NotFound(f"no record for key {key!r}")
        if type is not None:
            return typed_record(record, type, self._codec.content_type)
        return record

    async def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]:
        chosen = list(dict.fromkeys(self._key(k) for k in keys))
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        records = await self._get_many(chosen)
        if type is not None:
            return typed_records(records, type, self._codec.content_type)
        return records

    async def exists(self, key: str) -> bool:
        key = self._key(key)
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        return await self._exists(key)

    async def delete(self, key: str) -> bool:
        key = self._key(key)
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        await settle(self._pending)
        return await self._remove(key)

    async def delete_many(self, keys: Iterable[str]) -> int:
        chosen = [self._key(k) for k in keys]
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        await settle(self._pending)
        return await self._remove_many(chosen)

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> builtins.list[str]:
        validate_paging(limit, offset)
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise TypeError("prefix and suffix must be str")
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        return await self._keys(prefix, suffix, limit, offset)

    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be str")
        if self.no_watch is not None:
            raise NotSupported(self.no_watch)
        return WatchStream(
            functools.partial(self._watch_from, prefix),
            home=self._loop,
            pending=self._pending,
            streams=self._streams,
        )

    async def _watch_from(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        if self._closed or not self._opened:  # the usual case skips a coroutine
            await self._ready()
        return await self._subscribe(prefix, emit, fail)
