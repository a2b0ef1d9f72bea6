"""`memory://`: the in-memory store, on the Rust core or its pure-Python twin.

    store = microstd.store.open("memory://")              # a fresh private store
    store = microstd.store.open("memory://cache")         # shared by everything opening "cache"
    store = microstd.store.open("memory://?impl=python")  # the pure twin

Options (keyword or query): `impl` ("rust", the default when the extension
is built, or "python"; "rust" without it raises `NotSupported`),
`max_entries`, `max_bytes` (bounds; see the eviction order below), `codec`
(a content type or a `microstd.codec.Codec`; msgpack by default; `bytes`
values are always stored as they are). An unknown option raises
`InvalidArgument`.

When a write takes a bounded store over a bound, it evicts expired records,
then records with a TTL (soonest-expiring first), then the oldest-written
ones; never the record just written. A record larger than `max_bytes` is
refused with `MemoryError`. Evictions are reported to watchers as "delete".

Each watcher holds at most 10,000 unread events; a consumer that falls
further behind has its watch ended with `Closed` instead of missing events.
For a shared `memory://NAME`, the options of the first open win.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from microstd import _accel, _validate
from microstd._backends import Convert, ParsedURL, memory_options, shared_instance
from microstd.codec import Codec
from microstd.errors import InvalidArgument
from microstd.store._pure import PythonMemoryStore, closed_core
from microstd.store.base import (
    Event,
    Record,
    Revision,
    Store,
    SyncStore,
    typed_record,
    typed_records,
)

__all__ = ["MemoryBackend", "MemoryStore", "SyncMemoryStore"]

#: The options a memory store takes besides `impl`, with their query-string forms.
_OPTIONS: dict[str, Convert | None] = {"max_entries": int, "max_bytes": int, "codec": str}
# Longest the blocking watch sleeps without looking for a due expiry or a signal.
_SYNC_WAIT = 0.25


class Watcher(Protocol):
    """What `RustWatch` and `PythonWatch` both provide."""

    @property
    def closed(self) -> bool: ...
    def drain(self, max: int | None = None) -> list[Event] | None: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def set_waker(self, waker: Callable[[], object] | None) -> None: ...
    def close(self) -> None: ...


class Core(Protocol):
    """What `RustMemoryStore` and `PythonMemoryStore` both provide: the store's
    methods, blocking and fast, so both surfaces are thin wrappers."""

    def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: object = None,
        if_absent: bool = False,
    ) -> int: ...
    def read(self, key: str) -> Record: ...
    def read_many(self, keys: Iterable[str]) -> dict[str, Record]: ...
    def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, int]: ...
    def delete(self, key: str) -> bool: ...
    def delete_many(self, keys: Iterable[str]) -> int: ...
    def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]: ...
    def exists(self, key: str) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def sweep(self) -> int: ...
    def next_expiry(self) -> float | None: ...
    def watch(self, prefix: str = "", capacity: int = ...) -> Watcher: ...


def _int_option(options: dict[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(f"{name} must be an int, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an int, got {value!r}") from None
    if number < 1:
        raise InvalidArgument(f"{name} must be at least 1, got {number}")
    return number


def _codec_functions(
    spec: object, impl: str
) -> tuple[Callable[[object], bytes] | None, Callable[[bytes], object] | None]:
    """The dumps/loads a store should call, or (None, None) for the core's own msgpack."""
    from microstd.codec import get
    from microstd.codec.registry import normalize

    if spec is None:
        return None, None
    if isinstance(spec, str):
        codec = get(spec, impl=impl)
    elif isinstance(spec, Codec):
        codec = spec
    else:
        raise TypeError(f"codec must be a content type or a Codec, got {type(spec).__name__}")
    if (
        impl == "rust"
        and codec.impl == "rust"
        and normalize(codec.content_type) == ("application/msgpack")
    ):
        return None, None
    return codec.dumps, codec.loads


def new_core(impl: str | None = None, **options: Any) -> Core:
    """A new store core: `RustMemoryStore`, or `PythonMemoryStore` for `impl="python"`."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidArgument(f"unknown memory:// store option(s): {', '.join(unknown)}")
    impl = _validate.impl_choice(impl)
    dumps, loads = _codec_functions(options.get("codec"), impl)
    bounds = {
        "max_entries": _int_option(options, "max_entries"),
        "max_bytes": _int_option(options, "max_bytes"),
    }
    if impl == "python":
        return PythonMemoryStore(dumps=dumps, loads=loads, **bounds)
    core: Core = _accel.core.RustMemoryStore(dumps=dumps, loads=loads, **bounds)  # type: ignore[union-attr]
    return core


def _core_for(parsed: ParsedURL, options: dict[str, Any]) -> Core:
    opts = memory_options("store", parsed, options, _OPTIONS)
    if not opts.name:
        return new_core(opts.impl, **opts.values)
    return shared_instance(
        "store", opts.impl, opts.name, lambda: new_core(opts.impl, **opts.values)
    )


class MemoryBackend:
    """The `memory://` scheme: `memory://` is private, `memory://NAME` shared per process."""

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> Store:
        return MemoryStore(_core_for(parsed, options))

    @classmethod
    def from_url_sync(cls, parsed: ParsedURL, **options: Any) -> SyncStore:
        return SyncMemoryStore(_core_for(parsed, options))


class _Handle:
    """What both surfaces share: the core, and the watches to end on close."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._watchers: list[Watcher] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self._core).__name__})"

    def _watch(self, prefix: str) -> Watcher:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be str")
        watcher = self._core.watch(prefix)
        self._watchers = [w for w in self._watchers if not w.closed]
        self._watchers.append(watcher)
        return watcher

    def _close(self) -> None:
        # Other handles of a shared memory://NAME keep the data; this one is done.
        self._core = closed_core()
        for watcher in self._watchers:
            watcher.close()
        self._watchers = []


class MemoryStore(_Handle, Store):
    """The async surface of an in-memory store. Calls run inline: they take
    microseconds, so a thread hop would cost more than the work."""

    async def close(self) -> None:
        self._close()

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
        return self._core.write(
            key, value, ttl=ttl, metadata=metadata, if_revision=if_revision, if_absent=if_absent
        )

    async def read(self, key: str, *, type: Any = None) -> Record:
        record = self._core.read(key)
        return record if type is None else typed_record(record, type)

    async def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]:
        records = self._core.read_many(keys)
        return records if type is None else typed_records(records, type)

    async def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        return dict(self._core.write_many(items, ttl=ttl))

    async def delete(self, key: str) -> bool:
        return self._core.delete(key)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return self._core.delete_many(keys)

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        return self._core.list(prefix, suffix, limit, offset)

    async def exists(self, key: str) -> bool:
        return self._core.exists(key)

    async def stats(self) -> dict[str, int]:
        """`{"entries": ..., "bytes": ...}` of live records (keys + values + metadata)."""
        return self._core.stats()

    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        """Changes under `prefix` from this call on, in order, without polling."""
        return _AsyncWatch(self._watch(prefix), self._core)


class SyncMemoryStore(_Handle, SyncStore):
    """The blocking surface of an in-memory store."""

    def close(self) -> None:
        self._close()

    def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision:
        return self._core.write(
            key, value, ttl=ttl, metadata=metadata, if_revision=if_revision, if_absent=if_absent
        )

    def read(self, key: str, *, type: Any = None) -> Record:
        record = self._core.read(key)
        return record if type is None else typed_record(record, type)

    def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]:
        records = self._core.read_many(keys)
        return records if type is None else typed_records(records, type)

    def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        return dict(self._core.write_many(items, ttl=ttl))

    def delete(self, key: str) -> bool:
        return self._core.delete(key)

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._core.delete_many(keys)

    def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        return self._core.list(prefix, suffix, limit, offset)

    def exists(self, key: str) -> bool:
        return self._core.exists(key)

    def stats(self) -> dict[str, int]:
        """`{"entries": ..., "bytes": ...}` of live records (keys + values + metadata)."""
        return self._core.stats()

    def watch(self, prefix: str = "") -> Iterator[Event]:
        """Changes under `prefix` from this call on, in order; blocks between events."""
        return _sync_watch(self._watch(prefix), self._core)


def _sync_watch(watcher: Watcher, core: Core) -> Iterator[Event]:
    try:
        while True:
            batch = watcher.drain()
            if batch is None:
                return
            if batch:
                yield from batch
                continue
            # Sleep until an event, or until the next record is due to expire
            # (nothing else would reclaim it and emit its "expire").
            due = core.next_expiry()
            timeout = _SYNC_WAIT if due is None else min(due, _SYNC_WAIT)
            if not watcher.wait(timeout) and due is not None and due <= timeout:
                core.sweep()
    finally:
        watcher.close()


class _AsyncWatch:
    """Async iterator over a watcher: the core's waker sets an asyncio.Event
    (thread-safely when the writer is on another thread); a timer wakes it
    when the next record is due to expire, so expiries are reported too."""

    def __init__(self, watcher: Watcher, core: Core) -> None:
        self._watcher = watcher
        self._core = core
        self._pending: deque[Event] = deque()
        self._flag: asyncio.Event | None = None

    def __aiter__(self) -> _AsyncWatch:
        return self

    def _arm(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        loop_thread = threading.get_ident()

        def wake() -> None:
            if threading.get_ident() == loop_thread:
                flag.set()
                return
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(flag.set)

        self._watcher.set_waker(wake)
        self._flag = flag
        return flag

    async def __anext__(self) -> Event:
        while True:
            if self._pending:
                return self._pending.popleft()
            batch = self._watcher.drain()
            if batch is None:
                raise StopAsyncIteration
            if batch:
                self._pending.extend(batch)
                continue
            flag = self._flag or self._arm()
            flag.clear()
            batch = self._watcher.drain()
            if batch:
                self._pending.extend(batch)
                continue
            if batch is None:
                raise StopAsyncIteration
            due = self._core.next_expiry()
            timer = None if due is None else asyncio.get_running_loop().call_later(due, flag.set)
            try:
                await flag.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            if due is not None:
                self._core.sweep()

    async def aclose(self) -> None:
        """End the watch."""
        self._watcher.close()
