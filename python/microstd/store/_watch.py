"""`PythonWatch`: one watcher's bounded event queue, the twin of the Rust `RustWatch`."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from microstd.errors import Closed
from microstd.store.base import Event, EventKind

__all__ = ["PythonWatch"]


class PythonWatch:
    """Events for keys under `prefix`, in the store's order, at most `capacity` unread.

    The store pushes `(kind, key, entry)` under its lock; `drain` builds the
    `Event`s (decoding values) in the consumer, outside it. A consumer that
    falls `capacity` events behind has its watch ended: `drain` raises
    `Closed` rather than silently skipping events.
    """

    def __init__(
        self, prefix: str, capacity: int, make_event: Callable[[EventKind, str, Any], Event]
    ) -> None:
        self.prefix = prefix
        self._capacity = max(1, capacity)
        self._make_event = make_event
        self._events: deque[tuple[EventKind, str, Any]] = deque()
        self._closed = False
        self._overflowed = False
        self._cond = threading.Condition(threading.Lock())
        self._waker: Callable[[], object] | None = None

    @property
    def closed(self) -> bool:
        """True once the watch has ended."""
        return self._closed

    def push(self, kind: EventKind, key: str, entry: Any) -> bool:
        """Queue an event; True when the queue went from empty to non-empty."""
        with self._cond:
            if self._closed:
                return False
            if len(self._events) >= self._capacity:
                self._events.clear()
                self._overflowed = self._closed = True
                self._cond.notify_all()
                return True
            was_empty = not self._events
            self._events.append((kind, key, entry))
            if was_empty:
                self._cond.notify_all()
            return was_empty

    def wake(self) -> None:
        """Call the waker (outside the store's lock), reporting its errors as unraisable."""
        waker = self._waker
        if waker is not None:
            try:
                waker()
            except Exception as exc:
                import sys

                sys.unraisablehook(_Unraisable(exc, waker))  # type: ignore[arg-type]

    def drain(self, max: int | None = None) -> list[Event] | None:
        """Up to `max` queued events (all if None), oldest first; None once closed."""
        with self._cond:
            events = self._events
            if not events:
                if self._overflowed:
                    raise Closed(
                        f"watch ended: its consumer fell more than {self._capacity} events behind"
                    )
                if self._closed:
                    return None
                return []
            n = len(events) if max is None else min(max, len(events))
            taken = [events.popleft() for _ in range(n)]
        make = self._make_event
        return [make(kind, key, entry) for kind, key, entry in taken]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until an event is queued, the watch closes, or `timeout` passes."""
        if timeout is not None and not timeout >= 0:
            raise ValueError("timeout must be a non-negative number")
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._events) or self._closed, timeout)

    def set_waker(self, waker: Callable[[], object] | None) -> None:
        """`waker()` is called whenever the queue goes from empty to non-empty."""
        self._waker = waker

    def close(self) -> None:
        """End the watch; queued events are dropped and a waiting consumer is woken."""
        with self._cond:
            self._closed = True
            self._events.clear()
            self._cond.notify_all()
        self.wake()
        self._waker = None


class _Unraisable:
    """The argument `sys.unraisablehook` expects."""

    def __init__(self, exc: BaseException, obj: object) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = "Exception ignored in a store watch waker"
        self.object = obj
