"""`SyncRegistry`: the blocking twin of any async `Registry`, on a private loop thread."""

from __future__ import annotations

from collections.abc import Iterator

from microstd._lifecycle import SyncResource
from microstd._loopthread import LoopThread, iterate_blocking
from microstd.registry.base import Event, Registry, ServiceRecord

__all__ = ["SyncRegistry"]


class SyncRegistry(SyncResource):
    """The same methods as `Registry`, blocking. Use it as a context manager or call
    `connect()` / `close()`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._runner = LoopThread(f"microstd-registry-{type(registry).__name__}")
        self._closed = False

    def __repr__(self) -> str:
        return f"SyncRegistry({self.registry!r})"

    def connect(self) -> None:
        """Connect to the backend."""
        self._runner.run(self.registry.connect())

    def close(self) -> None:
        """Disconnect and stop the loop thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self.registry.close())
        finally:
            self._runner.stop()

    def register(self, service: ServiceRecord, ttl: float | None = None) -> None:
        """See `Registry.register`."""
        self._runner.run(self.registry.register(service, ttl))

    def deregister(self, service: ServiceRecord) -> None:
        """See `Registry.deregister`."""
        self._runner.run(self.registry.deregister(service))

    def lookup(self, name: str) -> list[ServiceRecord]:
        """See `Registry.lookup`."""
        return self._runner.run(self.registry.lookup(name))

    def list_services(self) -> list[ServiceRecord]:
        """See `Registry.list_services`."""
        return self._runner.run(self.registry.list_services())

    def watch(self, name: str | None = None) -> Iterator[Event]:
        """See `Registry.watch`."""
        return iterate_blocking(self._runner, self.registry.watch(name))
