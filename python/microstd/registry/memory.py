"""`memory://`: the embedded registry, in pure Python.

`memory://` is a private registry; `memory://NAME` is shared by everything in
the process that opens the same name (`memory://default` is what a `Service`
or `Client` uses when given no registry URL). The registry is small and its
hot path is a dict lookup, so it has no Rust core.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from microstd import _validate
from microstd._backends import ParsedURL, memory_options, shared_instance
from microstd.errors import NotSupported
from microstd.registry.base import ChangeFeed, EventChangeFeed, NodeRecord, Registry

__all__ = ["MemoryRegistry", "RegistryCore"]


class RegistryCore:
    """The data of one in-memory registry, safe to share across threads and loops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[tuple[str, str], NodeRecord] = {}
        self._feeds: set[_MemoryFeed] = set()

    def put(self, record: NodeRecord) -> None:
        with self._lock:
            self._nodes[record.key] = record
        self._notify()

    def remove(self, name: str, node_id: str) -> None:
        with self._lock:
            found = self._nodes.pop((name, node_id), None)
        if found is not None:
            self._notify()

    def load(self, name: str | None) -> list[NodeRecord]:
        now = time.time()
        with self._lock:
            # Drop expired records here so a long-lived process does not accumulate them.
            for key in [k for k, r in self._nodes.items() if not r.alive(now)]:
                del self._nodes[key]
            return [r for r in self._nodes.values() if name is None or r.name == name]

    def add_feed(self, feed: _MemoryFeed) -> None:
        with self._lock:
            self._feeds.add(feed)

    def drop_feed(self, feed: _MemoryFeed) -> None:
        with self._lock:
            self._feeds.discard(feed)

    def _notify(self) -> None:
        with self._lock:
            feeds = list(self._feeds)
        for feed in feeds:
            feed.poke()


class _MemoryFeed(EventChangeFeed):
    def __init__(self, core: RegistryCore) -> None:
        super().__init__()
        self._core = core
        self._loop = asyncio.get_running_loop()
        core.add_feed(self)

    def poke(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.mark_changed)
        except RuntimeError:  # the watcher's loop has closed
            self._core.drop_feed(self)

    async def close(self) -> None:
        self._core.drop_feed(self)


class MemoryRegistry(Registry):
    """An in-process registry; instances opened on the same `memory://NAME` share data."""

    # Changes are pushed to watchers; polling only bounds how long a lost wake-up could hide one.
    poll_interval = 30.0

    def __init__(self, core: RegistryCore | None = None, name: str = "") -> None:
        self.core = core if core is not None else RegistryCore()
        self.name = name

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> MemoryRegistry:
        # The registry has no Rust core: `impl="python"` (what every area's memory:// takes
        # for its pure twin) is accepted so one URL works in every area, `impl="rust"` says why not.
        opened = memory_options("registry", parsed, options, {"impl": str}, impls=False)
        impl = opened.values.get("impl")
        if impl not in (None, "", "python"):
            _validate.impl_choice(impl)  # InvalidArgument for a value that is no impl
            raise NotSupported(
                "the memory:// registry has no Rust core (it is pure Python):"
                " impl='python', or no impl"
            )
        name = opened.name
        if not name:
            return cls()
        return cls(shared_instance("registry", "python", name, RegistryCore), name)

    def __repr__(self) -> str:
        return f"MemoryRegistry({self.name!r})" if self.name else "MemoryRegistry()"

    @property
    def embedded(self) -> bool:
        return True

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        # Wake the watchers so this handle's watches see it closed and end now;
        # the others (on a shared name) re-read and carry on.
        self.core._notify()

    async def _put(self, record: NodeRecord, ttl: float | None) -> None:
        self.core.put(record)

    async def _remove(self, name: str, node_id: str) -> None:
        self.core.remove(name, node_id)

    async def _load(self, name: str | None) -> list[NodeRecord]:
        return self.core.load(name)

    async def _changes(self) -> ChangeFeed:
        return _MemoryFeed(self.core)
