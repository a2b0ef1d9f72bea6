"""`nats://HOST:PORT?bucket=NAME`: a store in a NATS JetStream key-value bucket (nats-py).

    store = microstd.store.open("nats://127.0.0.1:4222?bucket=app")

The bucket is created when missing (history 1, file storage). Records are
ordinary KV entries, so other KV clients see the same keys, values and
revisions; the store reads and writes the bucket's stream directly so it can
carry its own headers:

- the value is the encoded value, as is;
- ``Microstd-Meta`` holds the metadata (base64url of JSON), ``Microstd-Expires-At``
  the expiry time (epoch seconds).

Keys: NATS KV keys allow only ``[-/_=.A-Za-z0-9]``, so keys are escaped
reversibly: ASCII letters, digits, ``-`` and ``/`` stay as they are, every other
character becomes ``_XX`` per UTF-8 byte (``a.b`` is stored as ``a_2Eb``). The
escape works per character, so a key prefix stays a prefix of the stored name.

Revisions are the stream sequence numbers JetStream assigns (ints). Conditional
writes use ``Nats-Expected-Last-Subject-Sequence``, so they are atomic on the server.
On a replicated bucket (``replicas=3`` on a cluster) nats-server before 2.9.21
checks that header before its replication round, so two concurrent conditional
writes of one key can both succeed (nats-server#4320); against such a server
the store also sends ``Nats-Expected-Last-Sequence`` (the whole stream's last
sequence, which those servers do check in order) and tries again while other
keys' writes move it on: one more request per conditional write, and
conditional writes on a busy bucket may take longer, never both succeed.

TTL is emulated, because per-key TTL needs nats-server 2.11 and the servers
this targets may be older (2.9 here): an expired entry reads as missing at once,
and the store that wrote it (or any store that later sees it) deletes it when it
falls due, which watchers see as an "expire" event. A record whose writer went
away before its expiry is removed the next time a store reads or lists it.

`write_many` writes one key at a time (JetStream has no multi-key
transaction): readers may see a batch part-way, and one that fails is put back
(see `NetworkStore.write_many`; the undoing deletes are conditional on the
batch's sequence, checked by the server).

`list` uses no consumer: the names come from the stream's info and each
one's last entry is read (`microstd._engines.nats_kv`), so a cluster with a
server down, which may fail to create a consumer, still answers it.

Watch is native (an ordered JetStream consumer delivering new entries). When
the connection is lost the watch waits, and resumes after the reconnection from
the last entry it delivered: entries written meanwhile are delivered then
(except earlier values of a key written again, as history is 1).

Connection, timeouts and errors are `microstd._engines.nats`'s: options
``connect_timeout`` (5 s), ``timeout`` (5 s per request), ``ping_interval``
(10 s), ``reconnect_time_wait`` and ``max_reconnect_attempts`` (no limit), in
the URL or as keywords. The connection reconnects without limit; while it is
down a call waits up to ``timeout`` for it, then raises `ConnectionFailed`
(nothing is queued to be sent later). A write that raised `ConnectionFailed`
may still have been applied.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import nats.js.errors as jerr
from nats.js import api

from microstd._backends import ParsedURL
from microstd._engines import nats as engine
from microstd._engines import nats_kv
from microstd.errors import Closed, ConnectionFailed, DecodeError, InvalidArgument, InvalidKey
from microstd.store._common import (
    Expirer,
    decode_record,
    key_bytes,
    log,
    malformed,
    page,
    stored_expiry,
)
from microstd.store._network import NetworkStore, Put
from microstd.store._watch import Emit, Fail, Unsubscribe
from microstd.store.base import Event, Record, Revision

__all__ = ["NatsStore", "decode_key", "encode_key"]

#: Reads a batch read keeps in flight at once.
_READS_IN_FLIGHT = 32

_META = "Microstd-Meta"
_EXPIRES = "Microstd-Expires-At"
_REASON = "Microstd-Reason"
_OP = "KV-Operation"
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"
_EXPECTED_STREAM = "Nats-Expected-Last-Sequence"
#: The first nats-server that checks `_EXPECTED` in order on replicated streams.
_SUBJECT_CHECK_IN_ORDER = (2, 9, 21)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_WRONG_SEQUENCE = {10071, 10164}
_MAX_KEY_CHARS = 2048
_HEX = frozenset("0123456789ABCDEFabcdef")


def encode_key(key: str) -> str:
    """The KV-safe name of `key`: `_XX` escapes for every byte outside `[A-Za-z0-9/-]`."""
    raw = key_bytes(key)
    out = "".join(chr(b) if b in _SAFE else f"_{b:02X}" for b in raw)
    if len(out) > _MAX_KEY_CHARS:
        raise InvalidKey(f"key too long for NATS KV (escaped to {len(out)} characters)")
    return out


def decode_key(name: str) -> str:
    """The key `encode_key` turned into `name`; `DecodeError` for a name it cannot
    have made (another client may write any subject into the bucket's stream)."""
    raw = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "_":
            escape = name[i + 1 : i + 3]
            if len(escape) != 2 or not all(c in _HEX for c in escape):
                raise DecodeError(f"KV name {name[:100]!r} has a bad escape", i)
            raw.append(int(escape, 16))
            i += 3
        elif ord(name[i]) < 128:
            raw.append(ord(name[i]))
            i += 1
        else:
            raise DecodeError(f"KV name {name[:100]!r} is not ASCII", i)
    return raw.decode("utf-8", "replace")


def _decoded(names: Iterable[str]) -> Iterator[str | None]:
    """The key of each of `names`; None (logged) for a name no microstd store wrote."""
    for name in names:
        try:
            yield decode_key(name)
        except DecodeError as exc:
            log.warning("store list: skipped a foreign KV entry: %s", exc)
            yield None


class _StreamMoved(Exception):
    """A write with `_EXPECTED_STREAM` found the stream's last sequence moved on."""


def _expired(expires_at: float | None) -> bool:
    return expires_at is not None and expires_at <= time.time()


class NatsStore(NetworkStore):
    """A store in a JetStream KV bucket: native revisions and watch, emulated TTL."""

    def __init__(
        self,
        servers: str | engine.NatsEndpoint,
        *,
        bucket: str = "microstd",
        codec: object = None,
        sweep_interval: float = 5.0,
        replicas: int | str = 1,
        **connection: Any,
    ) -> None:
        """`servers` is a ``nats://`` URL (or an endpoint); `connection` holds the
        engine's options (`connect_timeout`, `timeout`, `ping_interval`, ...).
        `replicas` is how many cluster servers keep the bucket when this store
        creates it (3 on a three-server cluster)."""
        super().__init__(codec=codec)
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise ValueError(f"NATS KV bucket names are [A-Za-z0-9_-]+, got {bucket!r}")
        self.replicas = engine.replicas_option(replicas)
        if isinstance(servers, engine.NatsEndpoint):
            if connection:
                raise InvalidArgument(f"unknown nats store options: {sorted(connection)}")
            self._endpoint = servers
        else:
            self._endpoint, rest = engine.NatsEndpoint.from_url(servers, connection)
            if rest:
                raise InvalidArgument(f"unknown nats store options: {sorted(rest)}")
        self.bucket = bucket
        self._stream = f"KV_{bucket}"
        self._pre = f"$KV.{bucket}."
        self._timeout = self._endpoint.timeouts.request
        self._sweep_interval = float(sweep_interval)
        self._conn: engine.NatsConnection | None = None
        self._due: list[tuple[float, str, int]] = []
        self._expirer: Expirer | None = None
        # The bucket's copies, read when the store opens (see _serialized).
        self._copies = 1

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> NatsStore:
        """`nats://[user:password@]host:port?bucket=NAME`; options override the query."""
        endpoint, mine = engine.NatsEndpoint.from_url(parsed, options)
        if "sweep_interval" in mine:
            mine["sweep_interval"] = float(mine["sweep_interval"])
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"NatsStore({self._endpoint.redacted!r}, bucket={self.bucket!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"store {what}")

    # -- connection --------------------------------------------------------------

    async def _open(self) -> None:
        conn = await engine.acquire(self._endpoint)
        try:
            js = conn.jetstream("store connect")
            with self._errors("connect"):
                try:
                    info = await js.stream_info(self._stream)
                    self._copies = int(info.config.num_replicas or 1)
                except jerr.NotFoundError:
                    await js.create_key_value(bucket=self.bucket, history=1, replicas=self.replicas)
                    self._copies = self.replicas
        except BaseException:
            await engine.release(conn)
            raise
        self._conn = conn
        self._expirer = Expirer(self._sweep, self._sweep_interval)
        self._expirer.start()

    async def _shutdown(self) -> None:
        if self._expirer is not None:
            await self._expirer.stop()
            self._expirer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await engine.release(conn)

    async def _jetstream(self, what: str) -> Any:
        """A JetStream context on the live connection (see `NatsConnection.ready`)."""
        if self._conn is None:
            raise Closed("store is closed")
        await self._conn.ready(f"store {what}")
        return self._conn.jetstream(f"store {what}")

    # -- raw entries -------------------------------------------------------------

    async def _last(self, name: str) -> tuple[int, dict[str, str], bytes] | None:
        """(sequence, headers, data) of the last entry for `name`, or None."""
        js = await self._jetstream("read")
        with self._errors("read"):
            try:
                msg = await js.get_msg(self._stream, subject=self._pre + name)
            except jerr.NotFoundError:
                return None
        return int(msg.seq), dict(msg.headers or {}), msg.data or b""

    def _live(self, name: str, seq: int, headers: Mapping[str, str]) -> bool:
        """False for a deleted or expired entry; `DecodeError` for a malformed expiry."""
        if headers.get(_OP) in {"DEL", "PURGE"}:
            return False
        expires = stored_expiry(name, headers.get(_EXPIRES))
        if _expired(expires):
            self._schedule(expires, name, seq)  # type: ignore[arg-type]
            return False
        return True

    def _schedule(self, at: float, name: str, seq: int) -> None:
        heapq.heappush(self._due, (at, name, seq))
        if self._expirer is not None:
            self._expirer.poke(at)

    def _subject_check_racy(self) -> bool:
        """True when the server may let two conditional writes of one key both succeed:
        a replicated bucket on nats-server before 2.9.21 (or of unknown version)."""
        if self._copies <= 1 or self._conn is None or self._conn.nc is None:
            return False
        version = self._conn.nc.connected_server_version
        try:
            found = (version.major, version.minor, version.patch)
        except ValueError:
            return True
        return found < _SUBJECT_CHECK_IN_ORDER

    async def _publish(self, name: str, data: bytes, headers: dict[str, str]) -> int | None:
        """The new entry's sequence; None when `Nats-Expected-Last-Subject-Sequence` failed."""
        if _EXPECTED in headers and self._subject_check_racy():
            return await self._publish_serialized(name, data, headers)
        return await self._publish_once(await self._jetstream("write"), name, data, headers)

    async def _publish_serialized(
        self, name: str, data: bytes, headers: dict[str, str]
    ) -> int | None:
        """A conditional publish that a server checking `_EXPECTED` out of order
        cannot let through twice: it also expects the stream's last sequence, read
        just before with the key's last entry, so it is applied only if nothing at
        all was written since. A write to another key meanwhile: read both again.
        """
        expected = int(headers[_EXPECTED])
        deadline = time.monotonic() + self._timeout
        while True:
            js = await self._jetstream("write")
            with self._errors("write"):
                info = await js.stream_info(self._stream)
            stream_last = int(info.state.last_seq)
            last = await self._last(name)
            if (last[0] if last is not None else 0) != expected:
                return None  # the key moved on (or was written after stream_last)
            try:
                return await self._publish_once(
                    js, name, data, {**headers, _EXPECTED_STREAM: str(stream_last)}
                )
            except _StreamMoved:
                if time.monotonic() > deadline:
                    raise ConnectionFailed(
                        f"store write: the bucket {self.bucket!r} kept changing; the"
                        f" conditional write was not applied within {self._timeout:g}s"
                    ) from None

    async def _publish_once(
        self, js: Any, name: str, data: bytes, headers: dict[str, str]
    ) -> int | None:
        with self._errors("write"):
            try:
                ack = await js.publish(self._pre + name, data, headers=headers or None)
            except jerr.APIError as exc:
                if exc.err_code in _WRONG_SEQUENCE:
                    if _EXPECTED_STREAM in headers:
                        raise _StreamMoved from None
                    return None
                raise
        return int(ack.seq)

    async def _sweep(self) -> float | None:
        now = time.time()
        while self._due and self._due[0][0] <= now:
            _, name, seq = heapq.heappop(self._due)
            # Only if the expired entry is still the last one: never delete a newer write.
            headers = {_OP: "DEL", _REASON: "expire", _EXPECTED: str(seq)}
            await self._publish(name, b"", headers)
        return self._due[0][0] if self._due else None

    # -- the store ---------------------------------------------------------------

    def _check_key(self, key: str) -> None:
        encode_key(key)

    async def _put(self, put: Put) -> Revision | None:
        name = encode_key(put.key)
        headers: dict[str, str] = {}
        if put.metadata:
            meta = json.dumps(put.metadata).encode()
            headers[_META] = base64.urlsafe_b64encode(meta).decode()
        if put.expires_at is not None:
            headers[_EXPIRES] = repr(put.expires_at)
        if put.conditional:
            last = await self._last(name)
            live = last is not None and self._live(name, last[0], last[1])
            if put.if_revision is not None:
                if not live or last is None or last[0] != put.if_revision:
                    return None
            elif live:
                return None
            headers[_EXPECTED] = str(last[0] if last is not None else 0)
        seq = await self._publish(name, put.data, headers)
        if seq is not None and put.expires_at is not None:
            self._schedule(put.expires_at, name, seq)
        return seq

    def _record(self, key: str, seq: int, headers: Mapping[str, str], data: bytes) -> Record:
        meta: bytes | None = None
        if _META in headers:
            try:
                meta = base64.b64decode(headers[_META], altchars=b"-_", validate=True)
            except (ValueError, TypeError):
                raise malformed(key, "the metadata header is not base64") from None
        return decode_record(
            self._codec,
            key,
            data,
            metadata=meta,
            revision=seq,
            expires_at=headers.get(_EXPIRES),
        )

    async def _get(self, key: str) -> Record | None:
        name = encode_key(key)
        last = await self._last(name)
        if last is None or not self._live(name, last[0], last[1]):
            return None
        return self._record(key, *last)

    async def _get_many(self, keys: list[str]) -> dict[str, Record]:
        # Concurrent requests on the one connection: one read per key either way,
        # but not one round trip after another (write_many reads its keys first).
        # In batches: a failed read cancels the others, none runs on after we raise.
        found = await nats_kv.in_batches(self._get, keys, _READS_IN_FLIGHT)
        return {key: rec for key, rec in zip(keys, found, strict=True) if rec is not None}

    async def _exists(self, key: str) -> bool:
        name = encode_key(key)
        last = await self._last(name)
        return last is not None and self._live(name, last[0], last[1])

    async def _remove(self, key: str) -> bool:
        name = encode_key(key)
        last = await self._last(name)
        if last is None or last[1].get(_OP) in {"DEL", "PURGE"}:
            return False
        live = self._live(name, last[0], last[1])
        await self._publish(name, b"", {_OP: "DEL"} if live else {_OP: "DEL", _REASON: "expire"})
        return live

    async def _remove_if(self, key: str, revision: Revision) -> bool:
        # The server checks the key's last sequence: a newer write is never deleted.
        if isinstance(revision, bool) or not isinstance(revision, int):
            return False
        headers = {_OP: "DEL", _EXPECTED: str(revision)}
        return await self._publish(encode_key(key), b"", headers) is not None

    async def _keys(self, prefix: str, suffix: str, limit: int | None, offset: int) -> list[str]:
        # The names come from the stream's info and each one's last entry from a
        # direct read (nats_kv): no consumer, which a cluster with a server down
        # may fail to create (kv.keys() timed out about one call in three then).
        if self._conn is None:
            raise Closed("store is closed")
        nc = await self._conn.ready("store list")
        with self._errors("list"):
            names = await nats_kv.kv_names(nc, self.bucket, timeout=self._timeout)
        # Choose and order by key first, so a page reads only what it needs: the
        # keys before it and on it (a deleted or expired key takes no place).
        by_key: dict[str, str] = {}
        for name, key in zip(names, _decoded(names), strict=True):
            if key is not None and key.startswith(prefix) and key.endswith(suffix):
                by_key.setdefault(key, name)
        chosen = sorted(by_key)

        def live(name: str, seq: int, headers: Mapping[str, str]) -> bool:
            try:
                return self._live(name, seq, headers)
            except DecodeError:
                return True  # it exists; reading it says what is wrong

        with self._errors("list"):
            found = await nats_kv.kv_live(
                nc,
                self.bucket,
                [by_key[k] for k in chosen],
                timeout=self._timeout,
                live=live,
                want=None if limit is None else offset + limit,
            )
        alive = set(found)
        return page((k for k in chosen if by_key[k] in alive), "", "", limit, offset)

    async def _subscribe(self, prefix: str, emit: Emit, fail: Fail) -> Unsubscribe:
        js = await self._jetstream("watch")
        assert self._conn is not None

        async def deliver(msg: Any) -> None:
            try:
                event = self._event(msg, prefix)
            except DecodeError as exc:
                # Written by someone else: log without the payload, keep watching.
                log.warning(
                    "store watch: skipped a malformed entry (%d bytes): %s",
                    len(msg.data or b""),
                    exc,
                )
                return
            if event is not None:
                emit(event)

        # subscribe() returns once the consumer exists: every later write is delivered.
        # Heartbeats let nats-py notice a lost consumer and make a new one that goes
        # on from the last entry delivered (after a reconnection, a server restart).
        heartbeat = max(0.1, self._endpoint.timeouts.ping_interval / 2)
        with self._errors("watch"):
            sub = await js.subscribe(
                self._pre + ">",
                stream=self._stream,
                cb=deliver,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
                idle_heartbeat=heartbeat,
            )

        def on_event(event: str) -> None:
            if event == "closed":
                fail(ConnectionFailed(f"NATS connection to {self._endpoint.redacted} closed"))

        stop_listening = self._conn.listen(on_event)

        async def unsubscribe() -> None:
            stop_listening()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

        return unsubscribe

    def _event(self, msg: Any, prefix: str) -> Event | None:
        name = msg.subject[len(self._pre) :]
        key = decode_key(name)
        if not key.startswith(prefix):
            return None
        headers = msg.headers or {}
        op = headers.get(_OP)
        if op in {"DEL", "PURGE"}:
            return Event("expire" if headers.get(_REASON) == "expire" else "delete", key)
        seq = int(msg.metadata.sequence.stream)
        record = self._record(key, seq, headers, msg.data or b"")
        if record.expires_at is not None:
            self._schedule(record.expires_at, name, seq)
        return Event("put", key, record)
