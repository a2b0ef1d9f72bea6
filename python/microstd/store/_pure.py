"""`PythonMemoryStore`: the pure-Python twin of the Rust `RustMemoryStore`.

The same algorithms, written plainly: a dict of records plus a sorted key
list searched with `bisect` (so a prefix listing visits only its range), a
heap of deadlines for the amortised expiry sweep, one store-wide revision
counter, and one bounded event queue per watcher. Behaviour, errors, byte
accounting and eviction order match the Rust store exactly; see
`rust/src/store/memory.rs` for the rules both follow.
"""

from __future__ import annotations

import builtins
import heapq
import threading
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from microstd.errors import Closed, Conflict, EncodeError, InvalidKey, NotFound
from microstd.store._watch import PythonWatch
from microstd.store.base import Event, EventKind, Record, validate_metadata, validate_ttl

__all__ = ["SWEEP_BUDGET", "PythonMemoryStore", "PythonWatch"]

#: Expired records an operation reclaims in passing, at most.
SWEEP_BUDGET = 32
DEFAULT_WATCH_CAPACITY = 10_000


class _Entry:
    """One stored record; replaced, never mutated, so it can be read unlocked."""

    __slots__ = ("deadline", "key_bytes", "metadata", "payload", "raw", "revision")

    def __init__(
        self,
        payload: bytes,
        raw: bool,
        metadata: dict[str, str] | None,
        revision: int,
        deadline: float | None,
        key_bytes: int,
    ) -> None:
        self.payload = payload
        self.raw = raw
        self.metadata = metadata
        self.revision = revision
        self.deadline = deadline
        self.key_bytes = key_bytes

    @property
    def size(self) -> int:
        """What `stats()["bytes"]` counts: key, value payload and metadata, in UTF-8 bytes."""
        meta = self.metadata
        extra = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items()) if meta else 0
        return self.key_bytes + len(self.payload) + extra


def _key_bytes(key: object) -> int:
    """UTF-8 length of `key`, after checking it is a non-empty str (`InvalidKey`)."""
    if not isinstance(key, str):
        raise InvalidKey(f"store keys are str, got {type(key).__name__}")
    if not key:
        raise InvalidKey("store keys must not be empty")
    if key.isascii():
        return len(key)
    try:
        return len(key.encode())
    except UnicodeEncodeError:
        raise InvalidKey("store keys must be valid Unicode (no lone surrogates)") from None


def _default_codec() -> tuple[Callable[[object], bytes], Callable[[bytes], object]]:
    from microstd.codec import get

    codec = get("application/msgpack", impl="python")
    return codec.dumps, codec.loads


class PythonMemoryStore:
    """The ordered in-memory store, in pure Python. Thread-safe (one lock)."""

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        dumps: Callable[[object], bytes] | None = None,
        loads: Callable[[bytes], object] | None = None,
    ) -> None:
        if (dumps is None) != (loads is None):
            raise TypeError("pass both dumps and loads, or neither")
        if dumps is None or loads is None:
            dumps, loads = _default_codec()
        self._dumps = dumps
        self._loads = loads
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bounded = max_entries is not None or max_bytes is not None
        self._lock = threading.Lock()
        # Insertion-ordered; when bounded, a write re-inserts its key so the
        # first key is always the oldest-written.
        self._records: dict[str, _Entry] = {}
        self._keys: list[str] = []
        # (deadline, revision, key); stale items (overwritten or deleted) are
        # skipped when popped and compacted away when they pile up.
        self._expiry: list[tuple[float, int, str]] = []
        self._ttl_records = 0
        self._bytes = 0
        self._last_revision = 0
        self._watchers: list[PythonWatch] = []
        self._woken: list[PythonWatch] = []
        self._mono_epoch = time.monotonic()
        self._wall_epoch = time.time()

    # ---- encoding ------------------------------------------------------------

    def _encode(self, value: object) -> tuple[bytes, bool]:
        if isinstance(value, bytes):
            return bytes(value), True
        try:
            payload = self._dumps(value)
        except (EncodeError, ImportError):
            # ImportError: a pure codec's package is missing; its message says which.
            raise
        except Exception as exc:
            raise EncodeError(f"cannot encode {type(value).__name__}: {exc}", "$") from exc
        if not isinstance(payload, bytes):
            raise EncodeError("the codec's dumps did not return bytes", "$")
        return payload, False

    def _record(self, key: str, entry: _Entry) -> Record:
        value = entry.payload if entry.raw else self._loads(entry.payload)
        deadline = entry.deadline
        return Record(
            key,
            value,
            dict(entry.metadata) if entry.metadata else {},
            entry.revision,
            None if deadline is None else self._wall_epoch + deadline,
        )

    def _event(self, kind: EventKind, key: str, entry: _Entry | None) -> Event:
        return Event(kind, key, None if entry is None else self._record(key, entry))

    def _now(self) -> float:
        return time.monotonic() - self._mono_epoch

    # ---- reads ---------------------------------------------------------------

    def read(self, key: str) -> Record:
        """The live record for `key`; `NotFound` if missing or expired."""
        _key_bytes(key)
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            entry = None if self._expire_if_due(key, now) else self._records.get(key)
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        if entry is None:
            raise NotFound(f"no record for key {key!r}")
        return self._record(key, entry)

    def exists(self, key: str) -> bool:
        """True if a live record exists for `key`."""
        _key_bytes(key)
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            found = not self._expire_if_due(key, now) and key in self._records
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return found

    def read_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """The live records among `keys`; missing keys are absent from the result."""
        keys = list(keys)
        for key in keys:
            _key_bytes(key)
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            records = self._records
            found = []
            for key in keys:
                entry = records.get(key)
                if entry is not None and (entry.deadline is None or entry.deadline > now):
                    found.append((key, entry))
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return {key: self._record(key, entry) for key, entry in found}

    def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        """Live keys, sorted; filtered by prefix and suffix first, then paged."""
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise TypeError("prefix and suffix must be str")
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError("limit and offset must not be negative")
        out: list[str] = []
        if limit == 0:
            return out
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            keys, records = self._keys, self._records
            # When no deadline has passed (the heap's top is a lower bound of
            # every live deadline), no record can be expired: skip the lookups.
            any_due = bool(self._expiry) and self._expiry[0][0] <= now
            skip = offset
            for i in range(bisect_left(keys, prefix), len(keys)):
                key = keys[i]
                if not key.startswith(prefix):
                    break
                if not key.endswith(suffix):
                    continue
                if any_due:
                    deadline = records[key].deadline
                    if deadline is not None and deadline <= now:
                        continue
                if skip:
                    skip -= 1
                    continue
                out.append(key)
                if limit is not None and len(out) >= limit:
                    break
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return out

    def stats(self) -> dict[str, int]:
        """`{"entries": live records, "bytes": their keys + values + metadata}`."""
        self.sweep()
        with self._lock:
            return {"entries": len(self._records), "bytes": self._bytes}

    def next_expiry(self) -> float | None:
        """Seconds until the soonest record expires (0.0 if one is due), or None."""
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            woken = self._take_woken()
            heap = self._expiry
            while heap and not self._live_heap_item(heap[0]):
                heapq.heappop(heap)
            soonest = heap[0][0] if heap else None
        if woken:
            self._wake(woken)
        return None if soonest is None else max(0.0, soonest - now)

    # ---- writes --------------------------------------------------------------

    def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: object = None,
        if_absent: bool = False,
    ) -> int:
        """Stores `value` under `key`; returns the new revision (an int)."""
        if if_revision is not None and if_absent:
            raise ValueError("pass if_revision or if_absent, not both")
        key_bytes = _key_bytes(key)
        ttl = validate_ttl(ttl)
        meta = validate_metadata(metadata) or None
        payload, raw = self._encode(value)
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            self._expire_if_due(key, now)
            current = self._records.get(key)
            if if_absent and current is not None:
                raise Conflict(f"key {key!r} already exists (if_absent)")
            if if_revision is not None:
                if current is None:
                    raise Conflict(
                        f"key {key!r} does not exist "
                        "(if_revision on a missing, deleted or expired key)"
                    )
                if current.revision != if_revision or isinstance(if_revision, bool):
                    raise Conflict(f"key {key!r} has changed since the given revision")
            self._check_size(key_bytes, payload, meta)
            revision = self._insert(key, key_bytes, payload, raw, meta, ttl, now)
            self._enforce_limits(key, now)
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return revision

    def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, int]:
        """Writes every item unconditionally, all or nothing; returns each key's revision."""
        ttl = validate_ttl(ttl)
        encoded = [(key, _key_bytes(key), *self._encode(value)) for key, value in items.items()]
        out: dict[str, int] = {}
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            for _key, key_bytes, payload, _raw in encoded:
                self._check_size(key_bytes, payload, None)
            for key, key_bytes, payload, raw in encoded:
                self._expire_if_due(key, now)
                out[key] = self._insert(key, key_bytes, payload, raw, None, ttl, now)
                self._enforce_limits(key, now)
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return out

    def delete(self, key: str) -> bool:
        """Deletes `key`; True if a live record was deleted."""
        _key_bytes(key)
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            deleted = not self._expire_if_due(key, now) and self._remove(key, "delete")
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return deleted

    def delete_many(self, keys: Iterable[str]) -> int:
        """Deletes every key; returns how many live records were deleted."""
        keys = list(keys)
        for key in keys:
            _key_bytes(key)
        count = 0
        with self._lock:
            now = self._now()
            self._sweep(now, SWEEP_BUDGET)
            for key in keys:
                if not self._expire_if_due(key, now) and self._remove(key, "delete"):
                    count += 1
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return count

    def sweep(self) -> int:
        """Reclaims every expired record now (emitting "expire"); returns how many."""
        with self._lock:
            removed = self._sweep(self._now(), None)
            woken = self._take_woken()
        if woken:
            self._wake(woken)
        return removed

    # ---- watch ---------------------------------------------------------------

    def watch(self, prefix: str = "", capacity: int = DEFAULT_WATCH_CAPACITY) -> PythonWatch:
        """A watcher of keys under `prefix` holding at most `capacity` unread events."""
        watcher = PythonWatch(prefix, capacity, self._event)
        with self._lock:
            self._watchers = [w for w in self._watchers if not w.closed]
            self._watchers.append(watcher)
        return watcher

    def _take_woken(self) -> builtins.list[PythonWatch]:
        woken = self._woken
        if woken:
            self._woken = []
        return woken

    @staticmethod
    def _wake(watchers: builtins.list[PythonWatch]) -> None:
        for watcher in watchers:
            watcher.wake()

    def _emit(self, kind: EventKind, key: str, entry: _Entry | None) -> None:
        closed = False
        for watcher in self._watchers:
            if key.startswith(watcher.prefix):
                if watcher.push(kind, key, entry):
                    self._woken.append(watcher)
                closed = closed or watcher.closed
        if closed:
            self._watchers = [w for w in self._watchers if not w.closed]

    # ---- internals (called with the lock held) -------------------------------

    def _check_size(self, key_bytes: int, payload: bytes, meta: dict[str, str] | None) -> None:
        if self._max_bytes is None:
            return
        size = key_bytes + len(payload)
        if meta:
            size += sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
        if size > self._max_bytes:
            raise MemoryError(
                f"a record of {size} bytes cannot fit in a store bounded to {self._max_bytes} bytes"
            )

    def _insert(
        self,
        key: str,
        key_bytes: int,
        payload: bytes,
        raw: bool,
        meta: dict[str, str] | None,
        ttl: float | None,
        now: float,
    ) -> int:
        self._last_revision += 1
        revision = self._last_revision
        deadline = None if ttl is None else now + ttl
        entry = _Entry(payload, raw, meta, revision, deadline, key_bytes)
        records = self._records
        old = records.pop(key, None) if self._bounded else records.get(key)
        if old is None:
            insort(self._keys, key)
        else:
            self._forget(old)
        records[key] = entry
        self._bytes += entry.size
        if deadline is not None:
            self._ttl_records += 1
            heapq.heappush(self._expiry, (deadline, revision, key))
            if len(self._expiry) > 2 * self._ttl_records + 64:
                self._compact_expiry()
        if self._watchers:
            self._emit("put", key, entry)
        return revision

    def _forget(self, old: _Entry) -> None:
        self._bytes -= old.size
        if old.deadline is not None:
            self._ttl_records -= 1

    def _remove(self, key: str, kind: EventKind) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._forget(old)
        keys = self._keys
        del keys[bisect_left(keys, key)]
        if self._watchers:
            self._emit(kind, key, None)
        return True

    def _expire_if_due(self, key: str, now: float) -> bool:
        entry = self._records.get(key)
        if entry is not None and entry.deadline is not None and entry.deadline <= now:
            self._remove(key, "expire")
            return True
        return False

    def _live_heap_item(self, item: tuple[float, int, str]) -> bool:
        entry = self._records.get(item[2])
        return entry is not None and entry.revision == item[1]

    def _sweep(self, now: float, budget: int | None) -> int:
        heap = self._expiry
        removed = 0
        while heap and heap[0][0] <= now and (budget is None or removed < budget):
            item = heapq.heappop(heap)
            if self._live_heap_item(item):
                self._remove(item[2], "expire")
                removed += 1
        return removed

    def _compact_expiry(self) -> None:
        self._expiry = [item for item in self._expiry if self._live_heap_item(item)]
        heapq.heapify(self._expiry)

    def _over_limits(self) -> bool:
        return (self._max_entries is not None and len(self._records) > self._max_entries) or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        )

    def _enforce_limits(self, keep: str, now: float) -> None:
        while self._over_limits():
            victim = self._eviction_victim(keep)
            if victim is None:
                return
            deadline = self._records[victim].deadline
            expired = deadline is not None and deadline <= now
            self._remove(victim, "expire" if expired else "delete")

    def _eviction_victim(self, keep: str) -> str | None:
        # Records with a TTL, soonest-expiring first ...
        heap = self._expiry
        while heap and not self._live_heap_item(heap[0]):
            heapq.heappop(heap)
        if heap and heap[0][2] != keep:
            return heap[0][2]
        if heap:
            live = [item for item in heap if item[2] != keep and self._live_heap_item(item)]
            if live:
                return min(live)[2]
        # ... then the oldest-written record.
        for key in self._records:
            if key != keep:
                return key
        return None


def closed_core() -> Any:
    """A core stand-in whose every method raises `Closed`."""
    return _ClosedEngine()


class _ClosedEngine:
    def __getattr__(self, name: str) -> Any:
        def closed(*args: object, **kwargs: object) -> Any:
            raise Closed("the store is closed")

        return closed
