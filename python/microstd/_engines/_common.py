"""What the engine client modules share: timeout options and per-loop shared connections."""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from microstd._backends import ParsedURL, parse_url
from microstd.errors import InvalidArgument

__all__ = [
    "Shared",
    "Timeouts",
    "rebuilt_url",
    "seconds_option",
    "split_options",
]

C = TypeVar("C")

#: Defaults every engine uses unless its URL or options say otherwise (seconds).
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_PING_INTERVAL = 10.0


def rebuilt_url(
    scheme: str, parsed: ParsedURL, location: str, query: Mapping[str, str]
) -> ParsedURL:
    """``scheme://[user[:password]@]location[?query]``: `parsed`'s credentials (quoted
    again) in front of another location, for a client library's own URL parser."""
    userinfo = ""
    if parsed.username or parsed.password:
        userinfo = quote(parsed.username or "", safe="")
        if parsed.password is not None:
            userinfo += ":" + quote(parsed.password, safe="")
        userinfo += "@"
    rest = "&".join(f"{k}={v}" for k, v in query.items())
    url = f"{scheme}://{userinfo}{location}"
    return parse_url(f"{url}?{rest}" if rest else url)


def seconds_option(name: str, value: object) -> float:
    """A positive, finite number of seconds given as a number or query-string text."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgument(f"{name} must be a number of seconds, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Timeouts:
    """The time limits of one endpoint, in seconds.

    `connect`: opening a connection (TCP, TLS, handshake, authentication).
    `request`: any one request, from sending it to its answer.
    `ping_interval`: how long a long-lived stream (a subscription, a watch) may
    stay silent before the client checks that the server is still there; a
    check unanswered within `request` seconds ends the stream with
    `ConnectionFailed`.
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    request: float = DEFAULT_TIMEOUT
    ping_interval: float = DEFAULT_PING_INTERVAL

    #: The option names, as they appear in URLs and keyword options.
    OPTIONS = ("connect_timeout", "timeout", "ping_interval")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **defaults: float) -> Timeouts:
        """Timeouts from `connect_timeout`, `timeout` and `ping_interval` in `options`
        (numbers or their text); `defaults` (same names) replace the engine defaults."""
        values: dict[str, float] = {
            "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
            "timeout": DEFAULT_TIMEOUT,
            "ping_interval": DEFAULT_PING_INTERVAL,
        }
        values.update(defaults)
        for name in cls.OPTIONS:
            if options.get(name) is not None:
                values[name] = seconds_option(name, options[name])
        return cls(values["connect_timeout"], values["timeout"], values["ping_interval"])


def split_options(
    query: Mapping[str, str], options: Mapping[str, Any], mine: Iterable[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Split a URL's query and the keyword options into (`mine`, the rest of the query).

    Options named in `mine` are taken from the query, then from `options`
    (keywords win); what is left of the query is returned as it was, for the
    client library to read. Keyword options not in `mine` are left to the caller.
    """
    names = set(mine)
    taken: dict[str, Any] = {k: v for k, v in query.items() if k in names}
    rest = {k: v for k, v in query.items() if k not in names}
    taken.update({k: v for k, v in options.items() if k in names})
    return taken, rest


class _Entry(Generic[C]):
    __slots__ = ("opening", "users")

    def __init__(self, opening: asyncio.Task[C]) -> None:
        self.opening = opening
        self.users = 0


class Shared(Generic[C]):
    """Connections shared by everything on one event loop that asks with the same key.

    `acquire(key, open)` returns the live connection for `key` on the running
    loop, opening it with `open()` the first time (concurrent callers wait for
    the same opening); `release(key, close)` gives one reference back and
    closes the connection with `close(conn)` when the last one goes. A failed
    opening is not cached: the next `acquire` tries again. Connections are per
    loop because the client libraries bind them to the loop that made them.
    """

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Entry[C]]]
        self._loops = weakref.WeakKeyDictionary()

    def _entries(self) -> dict[Hashable, _Entry[C]]:
        loop = asyncio.get_running_loop()
        entries = self._loops.get(loop)
        if entries is None:
            entries = self._loops[loop] = {}
        return entries

    async def acquire(self, key: Hashable, open: Callable[[], Awaitable[C]]) -> C:
        """The shared connection for `key`, opened if needed; pair with `release`."""
        entries = self._entries()
        entry = entries.get(key)
        if entry is None:

            async def opening() -> C:
                return await open()

            entry = entries[key] = _Entry(asyncio.get_running_loop().create_task(opening()))
        entry.users += 1
        try:
            # Shielded: one caller's cancellation must not cancel the others' opening.
            return await asyncio.shield(entry.opening)
        except BaseException:
            entry.users -= 1
            task = entry.opening
            if task.done():
                if entries.get(key) is entry and (task.cancelled() or task.exception()):
                    del entries[key]
            elif entry.users == 0:
                # Every caller gave up while it was opening: stop it.
                task.cancel()
                if entries.get(key) is entry:
                    del entries[key]
            raise

    async def release(self, key: Hashable, close: Callable[[C], Awaitable[None]]) -> None:
        """Give back one reference to `key`'s connection; the last one closes it."""
        entries = self._entries()
        entry = entries.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users > 0:
            return
        del entries[key]
        if entry.opening.done() and not entry.opening.cancelled() and not entry.opening.exception():
            with contextlib.suppress(Exception):
                await close(entry.opening.result())

    def count(self, key: Hashable) -> int:
        """How many references to `key`'s connection are held on the running loop (tests)."""
        entry = self._entries().get(key)
        return 0 if entry is None else entry.users
