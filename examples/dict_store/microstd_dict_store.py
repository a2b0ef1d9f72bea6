"""`dict://NAME`: a microstd store kept in a plain dict, the smallest complete backend.

It writes only the primitives (`write`, `read`, `delete`, `list`, `watch`) and
inherits the rest from `microstd.store.Store` (`read_many`, `write_many`,
`delete_many`, `exists`). `dict://NAME` is shared by every store opened on the
same NAME in the process; `dict://` alone is private. It cannot watch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from microstd import codec
from microstd.errors import Conflict, InvalidArgument, NotFound, NotSupported
from microstd.store import Event, Record, Revision, Store
from microstd.store.base import validate_key, validate_metadata, validate_ttl

__all__ = ["DictBackend", "DictStore"]

# name -> (entries, lock); an entry is (encoded value, metadata, revision, deadline or None)
_Entry = tuple[bytes, dict[str, str], int, float | None]
_shared: dict[str, tuple[dict[str, _Entry], threading.Lock]] = {}
_shared_lock = threading.Lock()
_revisions = itertools.count(1)


class DictStore(Store):
    """A store in a dict; values are encoded with msgpack, so reads return copies."""

    def __init__(self, name: str = "") -> None:
        self._codec = codec.get("application/msgpack")
        if not name:
            self._entries: dict[str, _Entry] = {}
            self._lock = threading.Lock()
            return
        with _shared_lock:
            self._entries, self._lock = _shared.setdefault(name, ({}, threading.Lock()))

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry[3] is not None and entry[3] <= now:
            del self._entries[key]
            return None
        return entry

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
        self._check_open()
        key = validate_key(key)
        ttl = validate_ttl(ttl)
        meta = validate_metadata(metadata)
        data = self._codec.dumps(value)
        with self._lock:
            now = time.monotonic()
            current = self._live(key, now)
            if if_absent and current is not None:
                raise Conflict(f"key {key!r} already exists (if_absent)")
            if if_revision is not None and (current is None or current[2] != if_revision):
                raise Conflict(f"key {key!r} has changed since the given revision")
            revision = next(_revisions)
            deadline = None if ttl is None else now + ttl
            self._entries[key] = (data, meta, revision, deadline)
            return revision

    async def read(self, key: str, *, type: Any = None) -> Record:
        self._check_open()
        key = validate_key(key)
        with self._lock:
            now = time.monotonic()
            entry = self._live(key, now)
        if entry is None:
            raise NotFound(f"no record for key {key!r}")
        data, meta, revision, deadline = entry
        expires_at = None if deadline is None else time.time() + (deadline - now)
        value = self._codec.loads(data)
        return Record(key, value, dict(meta), revision, expires_at)

    async def delete(self, key: str) -> bool:
        self._check_open()
        key = validate_key(key)
        with self._lock:
            if self._live(key, time.monotonic()) is None:
                return False
            del self._entries[key]
            return True

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        self._check_open()
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidArgument(f"limit must be a non-negative int or None, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"offset must be a non-negative int, got {offset!r}")
        with self._lock:
            now = time.monotonic()
            keys = sorted(
                k
                for k in list(self._entries)
                if k.startswith(prefix) and k.endswith(suffix) and self._live(k, now)
            )
        return keys[offset:] if limit is None else keys[offset : offset + limit]

    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        raise NotSupported("dict:// stores cannot watch")


class DictBackend:
    """The `microstd.stores` entry point: `microstd.store.open("dict://NAME")`."""

    @staticmethod
    def from_url(parsed: Any, **options: Any) -> DictStore:
        if options or parsed.query:
            raise InvalidArgument("dict:// stores take no options")
        return DictStore(parsed.netloc_name)
