"""`BlockingStore`: the blocking twin of any async `Store`, on a private loop thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from microstd._loopthread import LoopThread, iterate_blocking
from microstd.store.base import Event, Record, Revision, Store, SyncStore

__all__ = ["BlockingStore"]


class BlockingStore(SyncStore):
    """Runs an async store's methods on its own event-loop thread and blocks for the result."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._runner = LoopThread(f"microstd-store-{type(store).__name__}")

    def __repr__(self) -> str:
        return f"BlockingStore({self._store!r})"

    def connect(self) -> None:
        self._runner.run(self._store.connect())

    def close(self) -> None:
        try:
            self._runner.run(self._store.close())
        finally:
            self._runner.stop()

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
        return self._runner.run(
            self._store.write(
                key, value, ttl=ttl, metadata=metadata, if_revision=if_revision, if_absent=if_absent
            )
        )

    def read(self, key: str, *, type: Any = None) -> Record:
        return self._runner.run(self._store.read(key, type=type))

    def read_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Record]:
        return self._runner.run(self._store.read_many(list(keys), type=type))

    def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        return self._runner.run(self._store.write_many(dict(items), ttl=ttl))

    def delete(self, key: str) -> bool:
        return self._runner.run(self._store.delete(key))

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._runner.run(self._store.delete_many(list(keys)))

    def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        return self._runner.run(self._store.list(prefix, suffix, limit, offset))

    def exists(self, key: str) -> bool:
        return self._runner.run(self._store.exists(key))

    def watch(self, prefix: str = "") -> Iterator[Event]:
        return iterate_blocking(self._runner, self._store.watch(prefix))
