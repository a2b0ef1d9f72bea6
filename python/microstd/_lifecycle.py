"""`connect()` / `close()` and the context-manager protocol, written once.

Every area's interface (store, broker, locks, registry) is used as
`async with x:` (or `with x:` on the blocking twin) or through explicit
`connect()` / `close()`; these bases give them that behaviour.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncResource", "SyncResource"]

A = TypeVar("A", bound="AsyncResource")
S = TypeVar("S", bound="SyncResource")


class AsyncResource:
    """An object with async `connect()` / `close()`, usable as `async with obj:`."""

    async def connect(self) -> None:
        """Open connections; embedded backends need nothing."""

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    async def __aenter__(self: A) -> A:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SyncResource:
    """An object with blocking `connect()` / `close()`, usable as `with obj:`."""

    def connect(self) -> None:
        """Open connections; embedded backends need nothing."""

    def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    def __enter__(self: S) -> S:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
