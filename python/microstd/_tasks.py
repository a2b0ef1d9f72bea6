"""Waiting and stopping in asyncio without losing a cancellation.

Two things in Python 3.11's asyncio (and the client libraries on it) can lose a
cancellation, and a loop that lost one runs on after its task was cancelled, so
whoever awaits that task waits for ever:

- ``asyncio.wait_for(event.wait(), t)`` returns normally when the event is set
  in the same turn of the loop as the cancellation arrives (gh-86296, fixed in
  3.12);
- some client libraries catch ``CancelledError`` mid-request (nats-py does).

`wait_event` waits without the first; `stop_task` ends a task despite the second.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["stop_task", "wait_event"]

log = logging.getLogger("microstd")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `event`; True if it is set. A cancellation
    of the caller always propagates."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=max(timeout, 0.0))
    finally:
        waiter.cancel()
    return event.is_set()


async def stop_task(task: asyncio.Task[Any], what: str, *, tries: int = 10) -> bool:
    """Cancel `task` until it ends, waiting half a second after each cancellation;
    True if it ended. One that swallows every cancellation is abandoned (logged)
    rather than waited for."""
    for _ in range(tries):
        task.cancel()
        done, _pending = await asyncio.wait((task,), timeout=0.5)
        if done:
            if not task.cancelled() and task.exception() is not None:
                log.debug("%s ended with an error: %r", what, task.exception())
            return True
    log.warning("%s did not stop; abandoning it", what)
    return False
