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
    _put_many(items, ttl, expires_at)         default: `_put` each (all encoded first)
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
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from microstd.codec.base import Codec
from microstd.errors import Closed, Conflict, NotFound, NotSupported
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
        out: dict[str, Revision] = {}
        for key, data in items.items():
            rev = await self._put(Put(key, data, {}, ttl, expires_at))
            assert rev is not None  # unconditional
            out[key] = rev
        return out

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
        a bad key or an unencodable value stores nothing."""
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
