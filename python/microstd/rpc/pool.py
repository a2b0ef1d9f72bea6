"""`HandlerPool`: the threads a server runs its sync handlers on, bounded and its own.

Why not `asyncio.to_thread`: that is the loop's default executor, shared with
everything else in the process (DNS lookups, file I/O, other libraries), and
`asyncio.run` waits for its threads at exit. A sync handler past its deadline
cannot be stopped (Python has no way to interrupt a running function), so on
the default executor a few stuck handlers starve every other user of it and
hold the process's shutdown for as long as they run.

Here each server has its own pool of at most `threads` daemon threads:

- a call whose deadline passes while it is still queued never starts (the
  awaiting side is cancelled, which cancels the queued work);
- a call whose deadline passes while it runs is abandoned: the caller gets its
  504 at once, the function runs to its end on its thread, and its result is
  dropped. It keeps its thread until then, so a pool full of stuck handlers
  queues further sync calls (they time out at their deadlines) but nothing else;
- `close()` does not wait: the threads are daemons, so a process can exit
  with a handler still running (its work is lost, as with SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from microstd.errors import Closed

__all__ = ["HandlerPool"]

T = TypeVar("T")

log = logging.getLogger("microstd.server")

_Work = tuple[Future[Any], Callable[[], Any]]


class _Crew:
    """One generation of threads and their queue; `close()` retires it whole."""

    __slots__ = ("queue", "queued", "started", "waiting")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.started = 0
        self.waiting = 0  # threads blocked in queue.get()
        self.queued = 0  # calls put and not yet taken


class HandlerPool:
    """At most `threads` daemon threads, started as work arrives; reusable after `close()`."""

    def __init__(self, threads: int, name: str = "microstd-handler") -> None:
        if threads < 1:
            raise ValueError(f"a handler pool needs at least one thread, got {threads}")
        self.threads = threads
        self.name = name
        self._lock = threading.Lock()
        self._crew = _Crew()

    def __repr__(self) -> str:
        return f"HandlerPool({self.threads}, busy={self.busy})"

    @property
    def busy(self) -> int:
        """Threads running a call right now."""
        crew = self._crew
        return crew.started - crew.waiting

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on a pool thread, in a copy of the current context."""
        ctx = contextvars.copy_context()
        future: Future[T] = Future()
        self._submit(future, functools.partial(ctx.run, fn, *args))
        # Cancelling the await cancels the work if it has not started yet.
        return await asyncio.wrap_future(future)

    def _submit(self, future: Future[Any], call: Callable[[], Any]) -> None:
        with self._lock:
            crew = self._crew
            crew.queued += 1
            crew.queue.put((future, call))
            if crew.queued > crew.waiting and crew.started < self.threads:
                crew.started += 1
                thread = threading.Thread(
                    target=self._worker,
                    args=(crew,),
                    name=f"{self.name}-{crew.started}",
                    daemon=True,
                )
                thread.start()

    def _worker(self, crew: _Crew) -> None:
        lock = self._lock
        while True:
            with lock:
                crew.waiting += 1
            work = crew.queue.get()
            with lock:
                crew.waiting -= 1
                if work is not None:
                    crew.queued -= 1
            if work is None:
                return
            future, call = work
            if future.set_running_or_notify_cancel():  # else cancelled while queued
                try:
                    result = call()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del work, future, call  # drop the request and result before waiting again

    def close(self) -> None:
        """Let the threads end once their current call returns; does not wait for them.

        Queued calls not yet started are cancelled. The pool may be used again:
        new threads start as work arrives.
        """
        with self._lock:
            crew, self._crew = self._crew, _Crew()
            busy = crew.started - crew.waiting
            pending: list[_Work] = []
            while True:
                try:
                    work = crew.queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    pending.append(work)
            for _ in range(crew.started):
                crew.queue.put(None)
        for future, _ in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(Closed("the server stopped before this call started"))
        if busy:
            log.warning(
                "%s: %d sync handlers still running; they cannot be interrupted and"
                " finish on their threads (their replies are dropped)",
                self.name,
                busy,
            )
