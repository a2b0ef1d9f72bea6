"""The source interface: something that produces a configuration tree."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from microstd.config.merge import ListMode
from microstd.errors import ConfigError

__all__ = ["Source", "nest", "poll_changes"]

log = logging.getLogger("microstd.config")


class Source:
    """One layer of configuration.

    `fetch()` returns a nested dict; sources that read text (environment,
    command line, key-value stores) set `textual`, so their string values are
    coerced to the schema's types, or parsed as JSON when there is no schema.
    A source that can notice changes implements `changes()`, an async
    iterator that yields each time its content may have changed.
    """

    #: Values are text to be coerced by the schema (or parsed as JSON without one).
    textual: bool = False
    #: Every value of this source is secret.
    secret: bool = False
    #: Keys may use `-` between levels (command-line options).
    dashed_keys: bool = False
    #: `fetch()` needs no network; `read()` gives the same tree synchronously.
    local: bool = False

    def __init__(self, name: str, *, optional: bool = False, lists: ListMode = "replace") -> None:
        if lists not in ("replace", "append"):
            raise ValueError(f"lists must be 'replace' or 'append', not {lists!r}")
        self.name = name
        self.optional = optional
        self.lists: ListMode = lists

    def read(self) -> dict[str, Any]:
        """The tree, read synchronously (local sources only)."""
        raise NotImplementedError(f"{self.name} is not a local source")

    async def fetch(self) -> dict[str, Any]:
        """The tree this source holds now; `ConfigError` when it cannot be read."""
        return self.read()

    def changes(self) -> AsyncIterator[None] | None:
        """An async iterator that yields when the content may have changed, or None."""
        return None

    def __repr__(self) -> str:
        flags = " optional" if self.optional else ""
        return f"<{type(self).__name__} {self.name!r}{flags}>"


def nest(flat: dict[str, Any], sep: str, where: str) -> dict[str, Any]:
    """`{"db.host": 1}` -> `{"db": {"host": 1}}`, splitting keys on `sep`.

    When a key is both a value and a parent (`db` and `db.host`), the nested
    keys win and the conflict is logged, so the result never depends on the
    order of the input.
    """
    out: dict[str, Any] = {}
    for key in sorted(flat, key=lambda k: (k.count(sep), k)):
        parts = [p for p in key.split(sep) if p] if sep else [key]
        if not parts:
            continue
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    log.warning(
                        "%s: %r is both a value and a parent; keeping the nested keys", where, part
                    )
                child = node[part] = {}
            node = child
        if isinstance(node.get(parts[-1]), dict):
            log.warning("%s: %r is both a value and a parent; keeping the nested keys", where, key)
            continue
        node[parts[-1]] = flat[key]
    return out


_UNSEEN = object()


async def poll_changes(source: Source, interval: float, jitter: float = 0.2) -> AsyncIterator[None]:
    """Re-fetch `source` every `interval` seconds (± `jitter` of it); yield when it changed.

    The jitter spreads many service instances' polls so they do not hit the
    server in lockstep.
    """
    # The first poll always signals: the reload's own diff then catches a change made between
    # the load and the start of the watch.
    last: Any = _UNSEEN
    while True:
        await asyncio.sleep(interval * (1.0 + random.uniform(-jitter, jitter)))
        try:
            current: Any = await source.fetch()
        except ConfigError:
            # A transient failure is reported by the reload that follows.
            yield None
            continue
        if current != last:
            last = current
            yield None
