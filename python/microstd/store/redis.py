"""`redis://HOST:PORT/DB`: a store in Redis through redis-py's asyncio client.

    store = microstd.store.open("redis://127.0.0.1:6379/0", prefix="app:store:")

Layout, under the namespace `prefix` (default ``microstd:store:``):

- ``<prefix>d:<key>`` one hash per record: ``v`` value, ``m`` metadata (JSON),
  ``r`` revision, ``e`` expires_at; a TTL is a ``PEXPIRE`` on that hash, so Redis
  itself expires records;
- ``<prefix>rev`` the revision counter (``INCR``), shared by every key, so a
  revision is never reused, not even after a delete;
- ``<prefix>events`` the pub/sub channel every write and delete publishes to.

Writes, conditions, the TTL and the watch event happen in one Lua script, so a
conditional write is atomic. `list` uses ``SCAN`` with an escaped ``MATCH``
pattern (never ``KEYS``), then filters the suffix, sorts and pages.

Watch: "put" and "delete" events come from the channel. "expire" events need
Redis keyspace notifications; pass ``expire_events=True`` and the store enables
them (``CONFIG SET notify-keyspace-events`` adding ``Ex``) when a watch starts.
Without it, an expiring record produces no event. Pub/sub is at-most-once:
events published while a watcher is disconnected are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, NoReturn

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from microstd._backends import ParsedURL, option_flag
from microstd.errors import (
    Closed,
    Conflict,
    ConnectionFailed,
    DecodeError,
    MicrostdError,
    NotFound,
    NotSupported,
)
from microstd.store._common import (
    Emit,
    Fail,
    Unsubscribe,
    WatchStream,
    close_streams,
    decode_record,
    encoded,
    key_bytes,
    log,
    malformed,
    page,
    resolve_codec,
    settle,
    validate_paging,
    write_many_encoded_first,
)
from microstd.store.base import (
    Event,
    EventKind,
    Record,
    Revision,
    Store,
    validate_metadata,
    validate_ttl,
)

__all__ = ["RedisStore"]

DEFAULT_PREFIX = "microstd:store:"

# KEYS: data hash, revision counter. ARGV: value, metadata, expires_at, ttl_ms,
# mode ("", "absent", "rev"), expected revision, channel, key.
_WRITE = """
local cur = redis.call('HGET', KEYS[1], 'r')
if ARGV[5] == 'absent' then
  if cur then return false end
elseif ARGV[5] == 'rev' then
  if (not cur) or cur ~= ARGV[6] then return false end
end
local rev = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[2], 'r', rev, 'e', ARGV[3])
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[7], 'p' .. rev .. ',' .. #ARGV[8] .. ',' .. #ARGV[2] .. ',' ..
  ARGV[3] .. ',' .. ARGV[8] .. ARGV[2] .. ARGV[1])
return rev
"""

# KEYS: data hash. ARGV: channel, key.
_DELETE = """
local n = redis.call('DEL', KEYS[1])
if n == 1 then
  redis.call('PUBLISH', ARGV[1], 'd0,' .. #ARGV[2] .. ',0,,' .. ARGV[2])
end
return n
"""

_KINDS: dict[bytes, EventKind] = {b"p": "put", b"d": "delete"}


def _glob_escape(text: bytes) -> bytes:
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _fail(exc: Exception) -> NoReturn:
    raise ConnectionFailed(f"Redis unreachable: {exc}") from exc


class RedisStore(Store):
    """A store in Redis: one hash per record, atomic Lua writes, pub/sub watch."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        codec: object = None,
        expire_events: bool = False,
        socket_timeout: float = 5.0,
        scan_count: int = 1000,
        redacted: str | None = None,
    ) -> None:
        self._url = url
        self._redacted = redacted or url
        self._codec = resolve_codec(codec)
        self._prefix = prefix.encode()
        self._data = self._prefix + b"d:"
        self._counter = self._prefix + b"rev"
        self._channel = self._prefix + b"events"
        self._expire_events = expire_events
        self._socket_timeout = socket_timeout
        self._scan_count = scan_count
        self._client: aioredis.Redis | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self._streams: set[WatchStream] = set()

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisStore:
        """`redis://[user:password@]host:port/db`; the store's own options may be in the query."""
        query = dict(parsed.query)
        mine: dict[str, Any] = {}
        for name in ("prefix", "codec", "expire_events", "socket_timeout", "scan_count"):
            if name in query:
                mine[name] = query.pop(name)
        mine.update(options)
        if "expire_events" in mine:
            mine["expire_events"] = option_flag(mine["expire_events"])
        for name, kind in (("socket_timeout", float), ("scan_count", int)):
            if name in mine:
                mine[name] = kind(mine[name])
        base = parsed.raw.split("?", 1)[0]
        if query:
            base += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return cls(base, redacted=parsed.redacted.split("?", 1)[0], **mine)

    def __repr__(self) -> str:
        return f"RedisStore({self._redacted!r}, prefix={self._prefix.decode()!r})"

    async def connect(self) -> None:
        if self._closed:
            raise Closed("store is closed")
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        # One quick retry: a caller should learn within seconds that the server is away.
        self._client = aioredis.Redis.from_url(
            self._url,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        )
        self._write_script = self._client.register_script(_WRITE)
        self._delete_script = self._client.register_script(_DELETE)
        try:
            await self._client.ping()
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)

    async def close(self) -> None:
        self._closed = True
        await close_streams(self._streams)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _redis(self) -> aioredis.Redis:
        if self._client is None:
            await self.connect()
        if self._client is None:
            raise Closed("store is closed")
        return self._client

    # -- writes ----------------------------------------------------------------

    async def write(
        self,
        key: str,
        value: object,
        *,
        ttl: float | None = None,
        metadata: Mapping[str, str] | None = None,
        if_revision: Revision | None = None,
        if_absent: bool = False,
    ) -> Revision:
        raw_key = key_bytes(key)
        ttl = validate_ttl(ttl)
        meta = validate_metadata(metadata)
        data = encoded(self._codec, value)
        mode, expected = "", ""
        if if_revision is not None:
            # Our revisions are ints; anything else can never match.
            if isinstance(if_revision, bool) or not isinstance(if_revision, int):
                raise Conflict(f"key {key!r} is not at revision {if_revision!r}")
            mode, expected = "rev", str(if_revision)
        elif if_absent:
            mode = "absent"
        expires = "" if ttl is None else repr(time.time() + ttl)
        ttl_ms = "" if ttl is None else str(max(1, round(ttl * 1000)))
        client = await self._redis()
        await settle(self._pending)
        try:
            rev = await self._write_script(
                keys=[self._data + raw_key, self._counter],
                args=[
                    data,
                    json.dumps(meta),
                    expires,
                    ttl_ms,
                    mode,
                    expected,
                    self._channel,
                    raw_key,
                ],
                client=client,
            )
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)
        if rev is None:
            if if_absent:
                raise Conflict(f"key {key!r} already exists")
            raise Conflict(f"key {key!r} is not at revision {if_revision!r}")
        return int(rev)

    async def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        return await write_many_encoded_first(self, self._codec, items, ttl)

    async def delete(self, key: str) -> bool:
        raw_key = key_bytes(key)
        client = await self._redis()
        await settle(self._pending)
        try:
            n = await self._delete_script(
                keys=[self._data + raw_key], args=[self._channel, raw_key], client=client
            )
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)
        return bool(n)

    # -- reads ---------------------------------------------------------------

    def _record(self, key: str, fields: object) -> Record | None:
        """The record in a hash read back; None when there is none (no value field)."""
        if isinstance(fields, rexc.ResponseError):
            # WRONGTYPE: someone else put a non-hash at the record's Redis key.
            raise malformed(key, "the Redis key does not hold a hash")
        if not isinstance(fields, dict) or b"v" not in fields:
            return None
        return decode_record(
            self._codec,
            key,
            fields[b"v"],
            metadata=fields.get(b"m"),
            revision=fields.get(b"r"),
            expires_at=fields.get(b"e"),
        )

    async def read(self, key: str) -> Record:
        raw_key = key_bytes(key)
        client = await self._redis()
        try:
            fields: object = await client.hgetall(self._data + raw_key)
        except rexc.ResponseError as exc:
            fields = exc
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)
        record = self._record(key, fields)
        if record is None:
            raise NotFound(f"no record for key {key!r}")
        return record

    async def read_many(self, keys: Iterable[str]) -> dict[str, Record]:
        chosen = [(k, key_bytes(k)) for k in keys]
        client = await self._redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for _, raw in chosen:
                    pipe.hgetall(self._data + raw)
                results = await pipe.execute(raise_on_error=False)
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)
        found: dict[str, Record] = {}
        for (key, _), fields in zip(chosen, results, strict=True):
            if isinstance(fields, (rexc.ConnectionError, rexc.TimeoutError)):
                _fail(fields)
            record = self._record(key, fields)
            if record is not None:
                found[key] = record
        return found

    async def exists(self, key: str) -> bool:
        raw_key = key_bytes(key)
        client = await self._redis()
        try:
            return bool(await client.exists(self._data + raw_key))
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        validate_paging(limit, offset)
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise TypeError("prefix and suffix must be str")
        pattern = _glob_escape(self._data + prefix.encode("utf-8", "surrogatepass")) + b"*"
        client = await self._redis()
        found: set[str] = set()
        cut = len(self._data)
        try:
            async for name in client.scan_iter(match=pattern, count=self._scan_count):
                found.add(name[cut:].decode("utf-8", "replace"))
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            _fail(exc)
        return page(found, prefix, suffix, limit, offset)

    # -- watch ---------------------------------------------------------------

    def watch(self, prefix: str = "") -> AsyncIterator[Event]:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be str")
        return WatchStream(
            functools.partial(self._subscribe, prefix),
            home=self._loop,
            pending=self._pending,
            streams=self._streams,
        )

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        client = await self._redis()
        raw_prefix = prefix.encode("utf-8", "surrogatepass")
        pubsub = client.pubsub()
        channels = [self._channel]
        try:
            if self._expire_events:
                channels.append(await self._enable_expire_events(client))
            await pubsub.subscribe(*channels)
            # Live only once Redis confirms every channel: wait for that.
            confirmed = 0
            deadline = time.monotonic() + self._socket_timeout
            while confirmed < len(channels):
                if time.monotonic() > deadline:
                    raise ConnectionFailed("Redis did not confirm the watch subscription")
                msg = await pubsub.get_message(timeout=0.2)
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    confirmed += 1
                elif msg["type"] == "message":
                    event = self._parse_or_skip(msg, raw_prefix)
                    if event is not None:
                        emit(event)
        except BaseException as exc:
            with contextlib.suppress(rexc.RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError, OSError)):
                _fail(exc)
            raise
        task = asyncio.get_running_loop().create_task(self._pump(pubsub, raw_prefix, emit, fail))

        async def unsubscribe() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(rexc.RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

        return unsubscribe

    async def _pump(self, pubsub: Any, raw_prefix: bytes, emit: Emit, fail: Fail) -> None:
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None:
                    continue
                event = self._parse_or_skip(msg, raw_prefix)
                if event is not None:
                    emit(event)
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            lost = ConnectionFailed(f"Redis watch connection lost: {exc}")
            lost.__cause__ = exc
            fail(lost)
        except MicrostdError as exc:
            fail(exc)

    def _parse_or_skip(self, msg: Mapping[str, Any], raw_prefix: bytes) -> Event | None:
        """The event in a pub/sub message; a malformed one (anyone may publish on the
        channel) is logged, without its payload, and skipped: the watch goes on."""
        channel, data = msg.get("channel"), msg.get("data")
        if not isinstance(channel, bytes) or not isinstance(data, bytes):
            log.warning("store watch: skipped a pub/sub message that is not bytes")
            return None
        try:
            return self._parse(channel, data, raw_prefix)
        except DecodeError as exc:
            log.warning(
                "store watch: skipped a malformed event on %r (%d bytes): %s",
                channel[:100],
                len(data),
                exc,
            )
            return None

    async def _enable_expire_events(self, client: aioredis.Redis) -> bytes:
        try:
            current = await client.config_get("notify-keyspace-events")
        except rexc.ResponseError as exc:  # CONFIG is often disabled on managed Redis
            raise NotSupported(
                "expire_events=True needs CONFIG GET/SET for keyspace notifications"
            ) from exc
        flags = str(current.get("notify-keyspace-events", ""))
        wanted = flags + ("" if "E" in flags else "E")
        if "x" not in flags and "A" not in flags:
            wanted += "x"
        if wanted != flags:
            try:
                await client.config_set("notify-keyspace-events", wanted)
            except rexc.ResponseError as exc:
                raise NotSupported(
                    "expire_events=True needs notify-keyspace-events to include 'Ex'"
                ) from exc
        db = client.connection_pool.connection_kwargs.get("db", 0)
        return f"__keyevent@{db}__:expired".encode()

    def _parse(self, channel: bytes, data: bytes, raw_prefix: bytes) -> Event | None:
        if channel != self._channel:
            # A keyspace "expired" notification carries the full Redis key.
            if not data.startswith(self._data + raw_prefix):
                return None
            return Event("expire", data[len(self._data) :].decode("utf-8", "replace"))
        try:
            head, rest = data[:1], data[1:]
            rev, klen, mlen, expires, tail = rest.split(b",", 4)
            k, m = int(klen), int(mlen)
        except ValueError:
            raise DecodeError("not a store event (bad header)", 0) from None
        if k < 0 or m < 0 or k + m > len(tail):
            raise DecodeError("not a store event (lengths beyond its end)", 0)
        raw_key, meta, value = tail[:k], tail[k : k + m], tail[k + m :]
        if not raw_key.startswith(raw_prefix):
            return None
        kind = _KINDS.get(head)
        if kind is None:
            return None
        key = raw_key.decode("utf-8", "replace")
        if kind != "put":
            return Event(kind, key)
        record = decode_record(
            self._codec, key, value, metadata=meta, revision=rev, expires_at=expires
        )
        return Event("put", key, record)
