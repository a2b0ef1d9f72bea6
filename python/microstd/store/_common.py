"""Helpers the disk and network store backends share: keys, values, paging, watch, expiry.

Nothing here is public API; the backends (`file`, `redis`, `nats`, `s3`) import it.

The watch machinery (`WatchStream`, `settle`, `close_streams`) lives in
`microstd.store._watch`, with the memory twin's queue it is built on; it is
re-exported here for the backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

from microstd import codec as _codec
from microstd._tasks import stop_task, wait_event
from microstd.codec.base import Codec
from microstd.errors import DecodeError, EncodeError, InvalidKey, MicrostdError
from microstd.store._watch import (
    Emit,
    Fail,
    Subscribe,
    Unsubscribe,
    WatchStream,
    close_streams,
    settle,
)
from microstd.store.base import Event, Record, Revision, validate_key

__all__ = [
    "Emit",
    "EventFanout",
    "Expirer",
    "Fail",
    "Subscribe",
    "Unsubscribe",
    "WatchStream",
    "close_streams",
    "decode_record",
    "encode_value",
    "key_bytes",
    "malformed",
    "page",
    "prefix_successor",
    "resolve_codec",
    "settle",
    "stored_expiry",
    "stored_value",
    "validate_paging",
]

log = logging.getLogger("microstd.store")

DEFAULT_CONTENT_TYPE = "application/msgpack"


def resolve_codec(option: object) -> Codec:
    """The codec an option names: a Codec, a content type, or None for msgpack."""
    if option is None:
        return _codec.get(DEFAULT_CONTENT_TYPE)
    if isinstance(option, Codec):
        return option
    if isinstance(option, str):
        return _codec.get(option)
    raise TypeError(f"codec must be a content type or a Codec, got {type(option).__name__}")


def key_bytes(key: object) -> bytes:
    """The UTF-8 bytes of a valid key; `InvalidKey` for non-str, empty or unencodable keys."""
    text = validate_key(key)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates cannot be stored by any backend that speaks UTF-8.
        raise InvalidKey(f"store keys must be valid Unicode text: {exc.reason}") from exc


def encode_value(codec: Codec, value: object) -> bytes:
    """`value` encoded with `codec`; any failure surfaces as `EncodeError`."""
    try:
        return codec.dumps(value)
    except EncodeError:
        raise
    except MicrostdError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise EncodeError(
            f"cannot encode {type(value).__name__} as {codec.content_type}: {exc}"
        ) from exc


# -- reading records back ------------------------------------------------------
#
# What a backend reads back may have been written by someone else: another
# program, an older version, or an attacker with access to the server. Every
# part of a record is checked here, and anything malformed raises one
# `DecodeError` naming the key (never KeyError / TypeError / struct.error from
# deep inside a backend). Messages never quote the stored bytes themselves.

# Failures a codec (ours or a user's) may raise on bad input, besides DecodeError.
_CODEC_FAILURES = (ValueError, TypeError, LookupError, ArithmeticError, RecursionError)


def malformed(key: object, what: str, offset: int = 0) -> DecodeError:
    """The `DecodeError` for a stored record that cannot be read back."""
    name = repr(key)
    if len(name) > 200:
        name = name[:200] + "..."
    return DecodeError(f"stored record {name} is malformed: {what}", offset)


def stored_value(codec: Codec, key: object, data: object) -> object:
    if not isinstance(data, bytes):
        raise malformed(key, f"the value is {type(data).__name__}, not bytes")
    try:
        return codec.loads(data)
    except DecodeError as exc:
        what = f"undecodable {codec.content_type} value: {exc.message}"
        raise malformed(key, what, exc.offset) from exc
    except _CODEC_FAILURES as exc:
        what = f"undecodable {codec.content_type} value ({type(exc).__name__})"
        raise malformed(key, what) from exc


def _stored_metadata(key: object, meta: object) -> dict[str, str]:
    if meta is None or meta in (b"", ""):
        return {}
    if isinstance(meta, (bytes, bytearray, str)):
        try:
            meta = json.loads(meta)
        except (ValueError, RecursionError):
            raise malformed(key, "the metadata is not JSON") from None
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise malformed(key, "the metadata is not a map of str to str")
    return meta


def _stored_revision(key: object, revision: object, numeric: bool) -> Revision:
    if not numeric:
        if isinstance(revision, str) and revision:
            return revision
        raise malformed(key, "the revision is missing")
    if isinstance(revision, int) and not isinstance(revision, bool):
        return revision
    if (
        isinstance(revision, (bytes, str))
        and 0 < len(revision) <= 20
        and revision.isascii()
        and revision.isdigit()
    ):
        return int(revision)
    raise malformed(key, "the revision is not a number")


def stored_expiry(key: object, expires_at: object) -> float | None:
    """A stored expiry time as epoch seconds (None for none); `DecodeError` if malformed."""
    if expires_at is None or expires_at in (b"", ""):
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float, bytes, str)):
        raise malformed(key, "the expiry time is not a number")
    try:
        value = float(expires_at)
    except (ValueError, OverflowError):
        raise malformed(key, "the expiry time is not a number") from None
    if not math.isfinite(value):
        raise malformed(key, "the expiry time is not finite")
    return value


def decode_record(
    codec: Codec,
    key: str,
    data: object,
    *,
    metadata: object,
    revision: object,
    expires_at: object,
    numeric_revision: bool = True,
) -> Record:
    """A `Record` from the raw parts a backend read back, each one checked.

    `data` is the encoded value; `metadata` JSON text or a mapping (None for
    none); `revision` an int (or its digits), or a non-empty str when
    `numeric_revision` is false; `expires_at` epoch seconds as a number or
    its text, or None / empty for none. Raises `DecodeError` naming the key.
    """
    return Record(
        key,
        stored_value(codec, key, data),
        _stored_metadata(key, metadata),
        _stored_revision(key, revision, numeric_revision),
        stored_expiry(key, expires_at),
    )


def validate_paging(limit: int | None, offset: int) -> None:
    """Reject negative or non-integer paging arguments with a clear error."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")


def page(
    keys: Iterable[str], prefix: str, suffix: str, limit: int | None, offset: int
) -> list[str]:
    """Filter by prefix and suffix, sort, then apply offset and limit."""
    chosen = sorted({k for k in keys if k.startswith(prefix) and k.endswith(suffix)})
    end = None if limit is None else offset + limit
    return chosen[offset:end]


def prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`; None if none.

    Code point order equals UTF-8 byte order, so this bounds a range query on
    backends that compare keys as UTF-8 bytes (SQLite's BINARY collation).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates, which UTF-8 cannot carry
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


class EventFanout:
    """Delivers events to every in-process watcher, whatever loop each one runs on."""

    def __init__(self) -> None:
        self._subs: dict[int, tuple[str, asyncio.AbstractEventLoop, Emit, Fail]] = {}
        self._ids = 0

    def add(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        """Register a watcher on the running loop; returns its unsubscribe function."""
        self._ids += 1
        ident = self._ids
        self._subs[ident] = (prefix, asyncio.get_running_loop(), emit, fail)

        async def unsubscribe() -> None:
            self._subs.pop(ident, None)

        return unsubscribe

    @property
    def active(self) -> bool:
        """True while anyone is watching (so publishers can skip building events)."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        """Hand `event` to every watcher whose prefix matches."""
        for prefix, loop, emit, _ in list(self._subs.values()):
            if event.key.startswith(prefix):
                with contextlib.suppress(RuntimeError):  # that watcher's loop has closed
                    loop.call_soon_threadsafe(emit, event)

    def close_all(self) -> None:
        """End every watch of this fan-out cleanly."""
        for _, loop, _, fail in list(self._subs.values()):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fail, None)
        self._subs.clear()


class Expirer:
    """A background task that calls `sweep()` when the next TTL falls due.

    `sweep()` removes what has expired and returns the next expiry time (epoch
    seconds) it knows of, or None. `poke(at)` wakes the task earlier for a
    write whose TTL ends sooner. `interval` caps the sleep so expiries written
    by other processes are also found.
    """

    def __init__(self, sweep: Callable[[], Awaitable[float | None]], interval: float) -> None:
        self._sweep = sweep
        self._interval = interval
        self._wake = asyncio.Event()
        self._next: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self, at: float) -> None:
        if self._next is None or at < self._next:
            self._next = at
            self._wake.set()

    async def stop(self) -> None:
        """End the task. Some client libraries swallow a cancellation (nats-py does,
        mid-publish), so the loop also checks a flag and the wait is bounded."""
        self._stopped = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task, "store expiry task")

    async def _run(self) -> None:
        while not self._stopped:
            delay = self._interval
            if self._next is not None:
                delay = min(delay, max(0.0, self._next - time.time()))
            self._wake.clear()
            await wait_event(self._wake, delay)
            if self._stopped:
                return
            if self._next is not None and self._next > time.time() and self._wake.is_set():
                continue  # woken by an earlier deadline; sleep until it
            try:
                self._next = await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sweep failure (server away) must not end the task
                log.debug("store expiry sweep failed: %r", exc)
                self._next = None
