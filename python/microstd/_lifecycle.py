"""`connect()` / `close()` and the context-manager protocol, written once.

Every handle microstd gives out (a store, broker, locks or registry, their
blocking twins, a `Client`, a `Service`) is used as `async with x:` (or
`with x:` on the blocking twins) or through explicit `connect()` / `close()`;
these bases give them that behaviour and one meaning of `close()`:

- `close()` is idempotent and final: a closed handle is not reopened, and
  `connect()` on it raises `Closed`;
- after it, every method of the handle raises `microstd.errors.Closed`;
- what the handle started ends with it: watches and subscriptions stop,
  lock waiters queued through it fail with `Closed`, and leaderships it won
  are resigned. Leases it granted are not released (another process may be
  relying on the fencing token): they stay held until released or expired,
  as on a network backend where the server keeps them until their TTL.

A subclass's own `close()` is wrapped (in `__init_subclass__`) so it runs
once and the handle counts as closed from the moment it starts (even if it
then raises), and its `connect()` so it
raises `Closed` on a closed handle; the other methods call `_check_open()`
(or keep an equivalent, cheaper check on their hot path).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from microstd.errors import Closed

__all__ = ["AsyncResource", "SyncResource"]

A = TypeVar("A", bound="AsyncResource")
S = TypeVar("S", bound="SyncResource")


def _closed_error(handle: object) -> Closed:
    return Closed(f"{type(handle).__name__} is closed")


def _wrap_async_close(close: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(close)
    async def wrapped(self: Any) -> None:
        if self.__dict__.get("_lifecycle_closed"):
            return
        # Closed from the first moment: nothing the handle runs meanwhile (a
        # watch waking up, a retry) may reconnect while close() tears down.
        self.__dict__["_lifecycle_closed"] = True
        try:
            await self._end_started()
        finally:
            await close(self)

    wrapped.__lifecycle_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped


def _wrap_async_connect(
    connect: Callable[[Any], Awaitable[None]],
) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(connect)
    async def wrapped(self: Any) -> None:
        self._check_open()
        await connect(self)

    wrapped.__lifecycle_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped


def _wrap_sync_connect(connect: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(connect)
    def wrapped(self: Any) -> None:
        self._check_open()
        connect(self)

    wrapped.__lifecycle_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped


def _wrap(cls: type, name: str, wrap: Callable[[Any], Any]) -> None:
    method = cls.__dict__.get(name)
    if method is not None and not getattr(method, "__lifecycle_wrapped__", False):
        setattr(cls, name, wrap(method))


def _wrap_sync_close(close: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(close)
    def wrapped(self: Any) -> None:
        if self.__dict__.get("_lifecycle_closed"):
            return
        self.__dict__["_lifecycle_closed"] = True
        try:
            self._end_started()
        finally:
            close(self)

    wrapped.__lifecycle_wrapped__ = True  # type: ignore[attr-defined]
    return wrapped


class _Lifecycle:
    """What both bases share: the closed state and the check."""

    # The state lives in the instance dict (these bases have no __slots__, so
    # every instance has one): a subclass needs no __init__ call to get it.
    @property
    def closed(self) -> bool:
        """True once `close()` has been called."""
        return bool(self.__dict__.get("_lifecycle_closed"))

    def _check_open(self) -> None:
        """Raise `Closed` if `close()` has been called."""
        if self.__dict__.get("_lifecycle_closed"):
            raise _closed_error(self)

    def _mark_closed(self) -> Closed:
        """Refuse new calls from now on, while `close()` is still ending what the
        handle started; returns the `Closed` error to hand to what it ends."""
        self.__dict__["_lifecycle_closed"] = True
        return _closed_error(self)


class AsyncResource(_Lifecycle):
    """An object with async `connect()` / `close()`, usable as `async with obj:`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap(cls, "close", _wrap_async_close)
        _wrap(cls, "connect", _wrap_async_connect)

    async def connect(self) -> None:
        """Open connections; embedded backends need nothing. `Closed` once closed."""
        self._check_open()

    async def _end_started(self) -> None:
        """End what this handle started (an area's base overrides it); `close()` calls
        it first, while the backend's connection is still open."""

    async def close(self) -> None:
        """Release connections and end what this handle started; see the module docstring."""
        if not self.__dict__.get("_lifecycle_closed"):
            self.__dict__["_lifecycle_closed"] = True
            await self._end_started()

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


class SyncResource(_Lifecycle):
    """An object with blocking `connect()` / `close()`, usable as `with obj:`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _wrap(cls, "close", _wrap_sync_close)
        _wrap(cls, "connect", _wrap_sync_connect)

    def connect(self) -> None:
        """Open connections; embedded backends need nothing. `Closed` once closed."""
        self._check_open()

    def _end_started(self) -> None:
        """End what this handle started (an area's base overrides it); `close()` calls
        it first, while the backend's connection is still open."""

    def close(self) -> None:
        """Release connections and end what this handle started; see the module docstring."""
        if not self.__dict__.get("_lifecycle_closed"):
            self.__dict__["_lifecycle_closed"] = True
            self._end_started()

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
