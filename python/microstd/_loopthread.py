"""A private event loop on a daemon thread, for the blocking twins of async backends.

`open_sync("redis://...")` returns an object whose methods block; it runs the
async client on this loop so a network backend is written once, async.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from microstd.errors import Closed

__all__ = ["LoopThread", "iterate_blocking"]

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running forever on its own daemon thread until `stop()`."""

    def __init__(self, name: str = "microstd-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()
        # Cancel whatever is left so the loop closes without "task destroyed" noise.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule `coro` on the loop; returns a concurrent future. `Closed` after `stop()`."""
        if self._stopped:
            coro.close()
            raise Closed(f"{self._thread.name} is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and block until it finishes; its exception propagates."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop: it would deadlock")
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        """Stop the loop and join the thread; idempotent. Later calls raise `Closed`."""
        self._stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


async def _next(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return True, await iterator.__anext__()
    except StopAsyncIteration:
        return False, None


def iterate_blocking(runner: LoopThread, iterator: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from a plain thread, one item per loop round trip."""
    try:
        while True:
            more, item = runner.run(_next(iterator))
            if not more:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            aw: Awaitable[None] = close()
            runner.run(_as_coro(aw))


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw
