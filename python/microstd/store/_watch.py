"""The one watch implementation of the store.

`PythonWatch` is one watcher's bounded event queue, the twin of the Rust
`RustWatch`: the memory store's pure twin uses it directly, and `WatchStream`
(the async iterator every disk and network store's `watch()` returns) uses it
as its queue, so every backend ends a watch whose consumer falls too far
behind the same way (`Closed`), and never skips events silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from microstd.errors import Closed
from microstd.store.base import Event, EventKind

__all__ = [
    "WATCH_CAPACITY",
    "Emit",
    "Fail",
    "PythonWatch",
    "Subscribe",
    "Unsubscribe",
    "WatchStream",
    "close_streams",
    "settle",
]

log = logging.getLogger("microstd.store")

#: Events a watcher may fall behind by before its watch ends (bounds memory per watcher);
#: the same bound as the memory store's.
WATCH_CAPACITY = 10_000


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
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        """True once the watch has ended."""
        return self._closed

    @property
    def overflowed(self) -> bool:
        """True once the watch has ended because its consumer fell too far behind."""
        return self._overflowed

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
                    if self._error is not None:
                        raise self._error
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

    def finish(self, error: BaseException | None = None) -> None:
        """End the watch once the queued events are consumed: `drain` returns them,
        then None (a clean end), or raises `error`. The network stores end a watch
        this way when they lose their change feed."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._cond.notify_all()
        self.wake()

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


Emit = Callable[[Event], None]
Fail = Callable[[BaseException | None], None]
Unsubscribe = Callable[[], Awaitable[None]]
Subscribe = Callable[[Emit, Fail], Awaitable[Unsubscribe]]


def _same(kind: EventKind, key: str, event: Any) -> Event:
    del kind, key
    return event  # type: ignore[no-any-return]


class WatchStream:
    """The async iterator a disk or network store's `watch()` returns, live from the
    moment it is made.

    `subscribe(emit, fail)` sets up the backend's change feed, returns once it is
    live, and gives back a coroutine function that ends it; the backend calls
    `emit(event)` for each change and `fail(exc)` when the feed is lost (`fail(None)`
    for a clean end): the watcher then gets the events already queued, then `exc`.
    Events queue in a `PythonWatch` of `WATCH_CAPACITY`.

    Made inside a running loop, the subscription starts as a task and the store's
    writes wait for it (`pending`, see `settle`), so every later write through the
    store is seen; changes made by other clients are seen once the subscription is
    set up. Made from a plain thread (the blocking twin), it subscribes on the
    store's loop `home` before returning.
    """

    def __init__(
        self,
        subscribe: Subscribe,
        *,
        home: asyncio.AbstractEventLoop | None,
        pending: set[asyncio.Future[None]],
        streams: set[WatchStream],
    ) -> None:
        self._subscribe = subscribe
        self._watcher = PythonWatch("", WATCH_CAPACITY, _same)
        self._started = False
        self._unsubscribe: Unsubscribe | None = None
        self._closed = False
        self._streams = streams
        self._task: asyncio.Task[None] | None = None
        self._ready: deque[Event] = deque()
        self._flag: asyncio.Event | None = None
        streams.add(self)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._task = loop.create_task(self._start())
            pending.add(self._task)
            self._task.add_done_callback(_settled(pending))
        elif home is not None and home.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._start(), home).result()
            except BaseException:
                streams.discard(self)
                raise
        # else: no loop yet; subscribe on the first __anext__.

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._unsubscribe = await self._subscribe(self._emit, self._fail)

    def _emit(self, event: Event) -> None:
        if self._watcher.push(event.kind, event.key, event):
            self._watcher.wake()
        if self._watcher.overflowed and self._unsubscribe is not None:
            # The consumer learns it from drain() (Closed); stop the feed now.
            log.error("store watch fell %d events behind; ending it", WATCH_CAPACITY)
            self._stop_feed()

    def _fail(self, exc: BaseException | None) -> None:
        self._watcher.finish(exc)

    def _stop_feed(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            task = asyncio.get_running_loop().create_task(_quietly(unsubscribe))
            self._streams.discard(self)
            _background.add(task)
            task.add_done_callback(_background.discard)

    def _arm(self) -> asyncio.Event:
        flag = asyncio.Event()
        self._watcher.set_waker(flag.set)
        self._flag = flag
        return flag

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._task is not None:
            await self._task
        elif not self._started:
            await self._start()
        while True:
            if self._ready:
                return self._ready.popleft()
            batch = self._watcher.drain()
            if batch is None:
                raise StopAsyncIteration
            if batch:
                self._ready.extend(batch)
                continue
            flag = self._flag or self._arm()
            flag.clear()
            batch = self._watcher.drain()
            if batch is None:
                raise StopAsyncIteration
            if batch:
                self._ready.extend(batch)
                continue
            await flag.wait()

    async def aclose(self) -> None:
        """End the subscription; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._streams.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            await _quietly(unsubscribe)
        self._watcher.close()


_background: set[asyncio.Task[None]] = set()


async def _quietly(unsubscribe: Unsubscribe) -> None:
    with contextlib.suppress(Exception):
        await unsubscribe()


def _settled(pending: set[asyncio.Future[None]]) -> Callable[[asyncio.Future[None]], None]:
    def done(task: asyncio.Future[None]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here; __anext__ re-raises it to the watcher

    return done


async def settle(pending: set[asyncio.Future[None]]) -> None:
    """Wait until every watch being set up is live, so a write cannot overtake it."""
    if pending:
        await asyncio.wait(set(pending))


async def close_streams(streams: set[WatchStream]) -> None:
    """End every open watch of a store that is closing."""
    for stream in list(streams):
        await stream.aclose()
