"""`redis://HOST:PORT/DB`: a store in Redis through redis-py's asyncio client.

    store = microstd.store.open("redis://127.0.0.1:6379/0", prefix="app:store:")

Layout, under the namespace `prefix` (default ``microstd:store:``):

- ``<prefix>d:<key>`` one hash per record: ``v`` value, ``m`` metadata (JSON),
  ``r`` revision, ``e`` expires_at; a TTL is a ``PEXPIRE`` on that hash, so Redis
  itself expires records;
- ``<prefix>rev`` the revision counter, shared by every key, so a revision is
  never reused, not even after a delete; each write raises it to
  max(counter + 1, the server's clock in microseconds), so revisions keep
  increasing across a restart that lost it (a Redis without persistence);
- ``<prefix>events`` the pub/sub channel every write and delete publishes to.

On Redis Cluster (``redis+cluster://n1:7000,n2:7000/``,
`microstd._engines.redis_cluster`) the namespace is the prefix with a hash tag
(``{microstd:store:}``; a prefix that holds a tag already is kept), so the whole
store is one hash slot and every script's keys are on one node: the store
lives on one shard. `list` scans that slot's master only; the watch's pub/sub
connection is to that master (classic PUBLISH reaches every node, and its
keyspace notifications only come from there).

Writes, conditions, the TTL and the watch event happen in one Lua script, so a
conditional write is atomic. `write_many` sends the whole batch as one script
(one round trip): on the server it is all or nothing, and no reader sees part of
it; each key gets its own new revision (consecutive) and its own "put" event. A
`write_many` that raised `ConnectionFailed` was applied in full or not at all.
`list` uses ``SCAN`` with an escaped ``MATCH`` pattern (never ``KEYS``), then
filters the suffix, sorts and pages.

Watch: "put" and "delete" events come from the channel. "expire" events need
Redis keyspace notifications; pass ``expire_events=True`` and the store enables
them (``CONFIG SET notify-keyspace-events`` adding ``Ex``) when a watch starts.
Without it, an expiring record produces no event. Pub/sub is at-most-once:
events published while a watcher is disconnected are lost, so a watch whose
connection is lost (or stays silent; see `microstd._engines.redis`) ends with
`ConnectionFailed` instead of resuming with a gap.

Connection, timeouts and errors are `microstd._engines.redis`'s: options
``connect_timeout`` (5 s), ``timeout`` (5 s; ``socket_timeout`` is another
name for it) and ``ping_interval`` (10 s), in the URL or as keywords. A write
that raised `ConnectionFailed` may still have been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.exceptions as rexc

from microstd._backends import ParsedURL, option_flag
from microstd._engines import redis as engine
from microstd._engines.redis_cluster import hash_tag
from microstd.errors import (
    Closed,
    ConnectionFailed,
    DecodeError,
    InvalidArgument,
    MicrostdError,
    NotSupported,
)
from microstd.store._common import decode_record, log, malformed, page
from microstd.store._network import NetworkStore, Put
from microstd.store._watch import Emit, Fail, Unsubscribe
from microstd.store.base import Event, EventKind, Record, Revision

__all__ = ["RedisStore"]

T = TypeVar("T")

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
-- max(counter + 1, server clock in us): revisions keep increasing across a
-- restart that lost the counter (see microstd/sync/redis.py's acquire script).
local now = redis.call('TIME')
local n = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last and n <= last then n = last + 1 end
local rev = string.format('%.0f', n)
redis.call('SET', KEYS[2], rev)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'm', ARGV[2], 'r', rev, 'e', ARGV[3])
if ARGV[4] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[7], 'p' .. rev .. ',' .. #ARGV[8] .. ',' .. #ARGV[2] .. ',' ..
  ARGV[3] .. ',' .. ARGV[8] .. ARGV[2] .. ARGV[1])
return rev
"""

# KEYS: revision counter, then one data hash per record. ARGV: expires_at,
# ttl_ms, channel, then the records' keys, then their values (in KEYS' order).
# Every read (TIME, the counter) comes before the first write, and no write can
# fail on its own (each hash is deleted before it is set), so the script applies
# in full or, stopped before its first write, not at all: Redis runs a script
# without interleaving other clients' commands and, once it has written, lets it
# finish even past maxmemory. Revisions are consecutive from the same
# max(counter + 1, server clock in us) as a single write's.
_WRITE_MANY = """
local now = redis.call('TIME')
local n = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last and n <= last then n = last + 1 end
local count = #KEYS - 1
local revs = {}
for i = 1, count do
  local rev = string.format('%.0f', n + i - 1)
  local key, value = ARGV[3 + i], ARGV[3 + count + i]
  redis.call('DEL', KEYS[i + 1])
  redis.call('HSET', KEYS[i + 1], 'v', value, 'm', '{}', 'r', rev, 'e', ARGV[1])
  if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[i + 1], ARGV[2]) end
  redis.call('PUBLISH', ARGV[3], 'p' .. rev .. ',' .. #key .. ',2,' .. ARGV[1] .. ',' ..
    key .. '{}' .. value)
  revs[i] = rev
end
redis.call('SET', KEYS[1], revs[count])
return revs
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


_OPTIONS = ("prefix", "codec", "expire_events", "scan_count")


class RedisStore(NetworkStore):
    """A store in Redis: one hash per record, atomic Lua writes, pub/sub watch."""

    def __init__(
        self,
        url: str | engine.RedisEndpoint,
        *,
        prefix: str = DEFAULT_PREFIX,
        codec: object = None,
        expire_events: bool = False,
        scan_count: int = 1000,
        **connection: Any,
    ) -> None:
        """`url` is a ``redis://`` URL (or an endpoint); `connection` holds the engine's
        options (`connect_timeout`, `timeout`, `socket_timeout`, `ping_interval`)."""
        super().__init__(codec=codec)
        if isinstance(url, engine.RedisEndpoint):
            if connection:
                raise InvalidArgument(f"unknown redis store options: {sorted(connection)}")
            self._endpoint = url
        else:
            self._endpoint, rest = engine.RedisEndpoint.from_url(url, connection)
            if rest:
                raise InvalidArgument(f"unknown redis store options: {sorted(rest)}")
        self._prefix = prefix.encode()
        # On a cluster every key of the store carries one hash tag, so the whole
        # store is one hash slot: the scripts' keys (a record and the revision
        # counter; a write_many's records) are always on one node.
        self._cluster = self._endpoint.cluster is not None
        space = hash_tag(prefix).encode() if self._cluster else self._prefix
        self._data = space + b"d:"
        self._counter = space + b"rev"
        self._channel = space + b"events"
        self._expire_events = expire_events
        self._scan_count = scan_count
        self._conn: engine.RedisConnection | None = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> RedisStore:
        """`redis://[user:password@]host:port/db`; the store's own options may be in the query."""
        endpoint, mine = engine.RedisEndpoint.from_url(parsed, options, area=_OPTIONS)
        if "expire_events" in mine:
            mine["expire_events"] = option_flag(mine["expire_events"])
        if "scan_count" in mine:
            mine["scan_count"] = int(mine["scan_count"])
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"RedisStore({self._endpoint.redacted!r}, prefix={self._prefix.decode()!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"store {what}")

    @property
    def _redis(self) -> Any:
        if self._conn is None:
            raise Closed("store is closed")
        return self._conn.client

    async def _open(self) -> None:
        conn = await engine.acquire(self._endpoint)
        try:
            self._write_script = conn.client.register_script(_WRITE)
            self._write_many_script = conn.client.register_script(_WRITE_MANY)
            self._delete_script = conn.client.register_script(_DELETE)
            await conn.ping("store connect")
        except BaseException:
            await engine.release(conn)
            raise
        self._conn = conn

    async def _shutdown(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)

    # -- writes ----------------------------------------------------------------

    async def _put(self, put: Put) -> Revision | None:
        mode, expected = "", ""
        if put.if_revision is not None:
            # Our revisions are ints; anything else can never match.
            if isinstance(put.if_revision, bool) or not isinstance(put.if_revision, int):
                return None
            mode, expected = "rev", str(put.if_revision)
        elif put.if_absent:
            mode = "absent"
        expires = "" if put.expires_at is None else repr(put.expires_at)
        ttl_ms = "" if put.ttl is None else str(max(1, round(put.ttl * 1000)))
        raw_key = put.key.encode()
        with self._errors("write"):
            rev = await self._write_script(
                keys=[self._data + raw_key, self._counter],
                args=[
                    put.data,
                    json.dumps(put.metadata),
                    expires,
                    ttl_ms,
                    mode,
                    expected,
                    self._channel,
                    raw_key,
                ],
                client=self._redis,
            )
        return None if rev is None else int(rev)

    async def _put_many(
        self, items: dict[str, bytes], ttl: float | None, expires_at: float | None
    ) -> dict[str, Revision]:
        """The whole batch in one script, one round trip: all or nothing on the server."""
        if not items:
            return {}
        raw_keys = [key.encode() for key in items]
        expires = "" if expires_at is None else repr(expires_at)
        ttl_ms = "" if ttl is None else str(max(1, round(ttl * 1000)))
        with self._errors("write_many"):
            revs = await self._write_many_script(
                keys=[self._counter, *(self._data + raw for raw in raw_keys)],
                args=[expires, ttl_ms, self._channel, *raw_keys, *items.values()],
                client=self._redis,
            )
        return {key: int(rev) for key, rev in zip(items, revs, strict=True)}

    async def _remove(self, key: str) -> bool:
        raw_key = key.encode()
        with self._errors("delete"):
            n = await self._delete_script(
                keys=[self._data + raw_key], args=[self._channel, raw_key], client=self._redis
            )
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

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """An idempotent read, tried once more on a connection found reset."""
        if self._conn is None:
            raise Closed("store is closed")
        return await self._conn.read("store read", call)

    async def _get(self, key: str) -> Record | None:
        async def hgetall() -> object:
            try:
                return await self._redis.hgetall(self._data + key.encode())
            except rexc.ResponseError as exc:
                return exc

        return self._record(key, await self._read(hgetall))

    async def _get_many(self, keys: list[str]) -> dict[str, Record]:
        async def pipelined() -> list[object]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(self._data + key.encode())
                results: list[object] = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, (rexc.ConnectionError, rexc.TimeoutError)):
                    raise result
            return results

        results = await self._read(pipelined)
        found: dict[str, Record] = {}
        for key, fields in zip(keys, results, strict=True):
            record = self._record(key, fields)
            if record is not None:
                found[key] = record
        return found

    async def _exists(self, key: str) -> bool:
        return bool(await self._read(lambda: self._redis.exists(self._data + key.encode())))

    async def _keys(self, prefix: str, suffix: str, limit: int | None, offset: int) -> list[str]:
        pattern = _glob_escape(self._data + prefix.encode("utf-8", "surrogatepass")) + b"*"
        cut = len(self._data)

        async def scan() -> set[str]:
            found: set[str] = set()
            where: dict[str, Any] = {}
            if self._cluster:
                # The store is one slot: scan only the master that holds it
                # (redis-py would scan every master).
                where["target_nodes"] = await self._slot_node()
            async for name in self._redis.scan_iter(match=pattern, count=self._scan_count, **where):
                found.add(name[cut:].decode("utf-8", "replace"))
            return found

        return page(await self._read(scan), prefix, suffix, limit, offset)

    async def _slot_node(self) -> Any:
        """Cluster: the master of the store's hash slot, by the client's slot map."""
        client = self._redis
        await client.initialize()  # a no-op unless the last call found the map stale
        return client.get_node_from_key(self._counter)

    # -- watch ---------------------------------------------------------------

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        assert self._conn is not None
        raw_prefix = prefix.encode("utf-8", "surrogatepass")
        subscriber = self._conn.subscriber()
        try:
            channels = [self._channel]
            if self._expire_events:
                channels.append(await self._enable_expire_events())
            # Live only once Redis confirms every channel.
            await subscriber.subscribe(*channels)
        except BaseException:
            await subscriber.aclose()
            raise
        task = asyncio.get_running_loop().create_task(
            self._pump(subscriber, raw_prefix, emit, fail)
        )

        async def unsubscribe() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await subscriber.aclose()

        return unsubscribe

    async def _pump(
        self, subscriber: engine.Subscriber, raw_prefix: bytes, emit: Emit, fail: Fail
    ) -> None:
        try:
            while True:
                msg = await subscriber.get(timeout=60.0)
                if msg is None:
                    continue
                event = self._parse_or_skip(msg, raw_prefix)
                if event is not None:
                    emit(event)
        except ConnectionFailed as exc:
            # Events published while the connection is down are lost for good:
            # end the watch rather than resume it with a silent gap.
            fail(exc)
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

    async def _enable_expire_events(self) -> bytes:
        client = self._redis
        # Keyspace notifications are local to a node: on a cluster, the master of
        # the store's slot (the watch's pub/sub connection is to that node too).
        where: dict[str, Any] = {}
        with self._errors("watch"):
            if self._cluster:
                where["target_nodes"] = await self._slot_node()
            try:
                current = await client.config_get("notify-keyspace-events", **where)
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
                    await client.config_set("notify-keyspace-events", wanted, **where)
                except rexc.ResponseError as exc:
                    raise NotSupported(
                        "expire_events=True needs notify-keyspace-events to include 'Ex'"
                    ) from exc
        db = 0 if self._cluster else client.connection_pool.connection_kwargs.get("db", 0)
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
