"""Hot reload: fan in change notifications, debounce, re-fetch, validate, swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from microstd.errors import ConfigError

if TYPE_CHECKING:
    from microstd.config.core import Config

__all__ = ["Change", "watch"]

log = logging.getLogger("microstd.config")

_RETRY_MIN = 0.2
_RETRY_MAX = 10.0


@dataclass(frozen=True)
class Change:
    """One applied reload: the dotted paths whose value changed, the old and new values.

    `old` and `new` are whole `cfg.value`s (schema instances, or dicts).
    """

    paths: tuple[str, ...]
    old: Any
    new: Any
    sources: tuple[str, ...]

    def __repr__(self) -> str:
        # old / new may hold secrets in plain fields (ints from Vault); only paths are shown.
        return f"Change(paths={self.paths!r}, sources={self.sources!r})"


async def _pump(cfg: Config, index: int, queue: asyncio.Queue[int]) -> None:
    """Forward one source's change notifications, restarting its watch after a failure."""
    source = cfg.sources[index]
    delay = _RETRY_MIN
    while True:
        stream = source.changes()
        if stream is None:
            return
        try:
            async for _ in stream:
                delay = _RETRY_MIN
                queue.put_nowait(index)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken watch must not end the service's reloads
            err = (
                exc
                if isinstance(exc, ConfigError)
                else ConfigError(f"{source.name}: watch failed: {type(exc).__name__}: {exc}")
            )
            cfg._report(err)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, _RETRY_MAX)
        # Changes may have been missed while the watch was down.
        queue.put_nowait(index)


async def watch(cfg: Config, debounce: float) -> AsyncIterator[Change]:
    """The body of `Config.watch()`."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks = [
        asyncio.create_task(_pump(cfg, i, queue), name=f"microstd.config watch {s.name}")
        for i, s in enumerate(cfg.sources)
        if s.changes is not None
    ]
    try:
        while True:
            pending = {await queue.get()}
            # A burst (an editor writing a file in three steps) becomes one reload; a source
            # that never goes quiet still gets reloaded once `max_wait` has passed.
            loop = asyncio.get_running_loop()
            give_up = loop.time() + max(debounce * 20, 1.0)
            while (left := give_up - loop.time()) > 0:
                try:
                    pending.add(await asyncio.wait_for(queue.get(), min(debounce, left)))
                except asyncio.TimeoutError:
                    break
            change = await cfg._reload(sorted(pending))
            if change is not None:
                yield change
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
