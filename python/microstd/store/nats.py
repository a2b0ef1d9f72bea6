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

TTL is emulated, because per-key TTL needs nats-server 2.11 and the servers
this targets may be older (2.9 here): an expired entry reads as missing at once,
and the store that wrote it (or any store that later sees it) deletes it when it
falls due, which watchers see as an "expire" event. A record whose writer went
away before its expiry is removed the next time a store reads or lists it.

Watch is native (an ordered JetStream consumer delivering new entries).
If the server goes away the client reconnects for a short while; after that,
calls raise `ConnectionFailed` and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import heapq
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import nats
import nats.errors as nerr
import nats.js.errors as jerr
from nats.js import api

from microstd._backends import ParsedURL
from microstd.errors import (
    Closed,
    Conflict,
    ConnectionFailed,
    DecodeError,
    InvalidKey,
    NotFound,
)
from microstd.store._common import (
    Emit,
    Expirer,
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
    stored_expiry,
    validate_paging,
    write_many_encoded_first,
)
from microstd.store.base import (
    Event,
    Record,
    Revision,
    Store,
    validate_metadata,
    validate_ttl,
)

__all__ = ["NatsStore", "decode_key", "encode_key"]

_META = "Microstd-Meta"
_EXPIRES = "Microstd-Expires-At"
_REASON = "Microstd-Reason"
_OP = "KV-Operation"
_EXPECTED = "Nats-Expected-Last-Subject-Sequence"
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/")
_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_WRONG_SEQUENCE = {10071, 10164}
_NETWORK_ERRORS = (
    nerr.ConnectionClosedError,
    nerr.NoServersError,
    nerr.TimeoutError,
    nerr.NoRespondersError,
    nerr.StaleConnectionError,
    nerr.OutboundBufferLimitError,
    nerr.ConnectionReconnectingError,
    jerr.ServiceUnavailableError,
    asyncio.TimeoutError,
    OSError,
)
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


def _decodable_keys(names: Iterable[str]) -> Iterator[str]:
    """The keys of `names`, skipping (and logging) names no microstd store wrote."""
    for name in names:
        try:
            yield decode_key(name)
        except DecodeError as exc:
            log.warning("store list: skipped a foreign KV entry: %s", exc)


async def _quiet(exc: Exception) -> None:
    # nats-py logs every failed reconnect with a traceback by default; the store
    # reports connection trouble to its caller instead.
    del exc


def _expired(expires_at: float | None) -> bool:
    return expires_at is not None and expires_at <= time.time()


class NatsStore(Store):
    """A store in a JetStream KV bucket: native revisions and watch, emulated TTL."""

    def __init__(
        self,
        servers: str,
        *,
        bucket: str = "microstd",
        codec: object = None,
        timeout: float = 2.0,
        sweep_interval: float = 5.0,
        redacted: str | None = None,
    ) -> None:
        if not _BUCKET_RE.match(bucket):
            raise ValueError(f"NATS KV bucket names are [A-Za-z0-9_-]+, got {bucket!r}")
        self._servers = servers
        self._redacted = redacted or servers
        self.bucket = bucket
        self._stream = f"KV_{bucket}"
        self._pre = f"$KV.{bucket}."
        self._codec = resolve_codec(codec)
        self._timeout = timeout
        self._sweep_interval = sweep_interval
        self._nc: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._due: list[tuple[float, str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self._streams: set[WatchStream] = set()
        self._expirer: Expirer | None = None

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> NatsStore:
        """`nats://[user:password@]host:port?bucket=NAME`; options override the query."""
        merged: dict[str, Any] = {**parsed.query, **options}
        for name in ("timeout", "sweep_interval"):
            if name in merged:
                merged[name] = float(merged[name])
        servers = parsed.raw.split("?", 1)[0]
        return cls(servers, redacted=parsed.redacted.split("?", 1)[0], **merged)

    def __repr__(self) -> str:
        return f"NatsStore({self._redacted!r}, bucket={self.bucket!r})"

    # -- connection --------------------------------------------------------------

    async def connect(self) -> None:
        await self._jetstream()

    async def _jetstream(self) -> Any:
        """The JetStream context, (re)connecting when the last connection was lost."""
        if self._closed:
            raise Closed("store is closed")
        nc = self._nc
        if nc is not None and nc.is_reconnecting:
            deadline = time.monotonic() + self._timeout
            # nats-py has no "reconnected" awaitable; poll its state briefly.
            while nc.is_reconnecting and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        if nc is not None and nc.is_connected:
            return self._js
        async with self._lock:
            if self._nc is not None and self._nc.is_connected:
                return self._js
            if self._nc is not None and self._nc.is_reconnecting:
                raise ConnectionFailed(f"NATS server {self._redacted} unreachable (reconnecting)")
            await self._open()
        return self._js

    async def _open(self) -> None:
        old, self._nc = self._nc, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        try:
            nc = await nats.connect(
                self._servers,
                connect_timeout=self._timeout,
                reconnect_time_wait=0.2,
                max_reconnect_attempts=5,
                error_cb=_quiet,
            )
        except (*_NETWORK_ERRORS, nerr.Error) as exc:
            raise ConnectionFailed(f"cannot connect to NATS at {self._redacted}: {exc}") from exc
        js = nc.jetstream(timeout=self._timeout)
        try:
            try:
                await js.stream_info(self._stream)
            except jerr.NotFoundError:
                await js.create_key_value(bucket=self.bucket, history=1)
        except _NETWORK_ERRORS as exc:
            await nc.close()
            raise ConnectionFailed(f"NATS JetStream unavailable: {exc}") from exc
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        self._loop = asyncio.get_running_loop()
        if self._expirer is None:
            self._expirer = Expirer(self._sweep, self._sweep_interval)
            self._expirer.start()

    async def close(self) -> None:
        self._closed = True
        await close_streams(self._streams)
        if self._expirer is not None:
            await self._expirer.stop()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _NETWORK_ERRORS as exc:
            raise ConnectionFailed(f"NATS server {self._redacted} unreachable: {exc}") from exc

    # -- raw entries -------------------------------------------------------------

    async def _last(self, name: str) -> tuple[int, dict[str, str], bytes] | None:
        """(sequence, headers, data) of the last entry for `name`, or None."""
        js = await self._jetstream()
        with self._guard():
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

    async def _publish(self, name: str, data: bytes, headers: dict[str, str]) -> int:
        js = await self._jetstream()
        await settle(self._pending)
        with self._guard():
            try:
                ack = await js.publish(self._pre + name, data, headers=headers or None)
            except jerr.APIError as exc:
                if exc.err_code in _WRONG_SEQUENCE:
                    raise Conflict("the record changed (wrong last sequence)") from exc
                raise
        return int(ack.seq)

    async def _sweep(self) -> float | None:
        now = time.time()
        while self._due and self._due[0][0] <= now:
            _, name, seq = heapq.heappop(self._due)
            # Only if the expired entry is still the last one: never delete a newer write.
            headers = {_OP: "DEL", _REASON: "expire", _EXPECTED: str(seq)}
            with contextlib.suppress(Conflict):
                await self._publish(name, b"", headers)
        return self._due[0][0] if self._due else None

    # -- the store ---------------------------------------------------------------

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
        name = encode_key(key)
        ttl = validate_ttl(ttl)
        meta = validate_metadata(metadata)
        data = encoded(self._codec, value)
        headers: dict[str, str] = {}
        if meta:
            headers[_META] = base64.urlsafe_b64encode(json.dumps(meta).encode()).decode()
        expires_at = None if ttl is None else time.time() + ttl
        if expires_at is not None:
            headers[_EXPIRES] = repr(expires_at)
        if if_revision is not None or if_absent:
            last = await self._last(name)
            live = last is not None and self._live(name, last[0], last[1])
            if if_revision is not None:
                if not live or last is None or last[0] != if_revision:
                    raise Conflict(f"key {key!r} is not at revision {if_revision!r}")
            elif live:
                raise Conflict(f"key {key!r} already exists")
            headers[_EXPECTED] = str(last[0] if last is not None else 0)
            try:
                seq = await self._publish(name, data, headers)
            except Conflict as exc:
                what = "already exists" if if_absent else f"is not at revision {if_revision!r}"
                raise Conflict(f"key {key!r} {what}") from exc
        else:
            seq = await self._publish(name, data, headers)
        if expires_at is not None:
            self._schedule(expires_at, name, seq)
        return seq

    async def write_many(
        self, items: Mapping[str, object], *, ttl: float | None = None
    ) -> dict[str, Revision]:
        return await write_many_encoded_first(self, self._codec, items, ttl)

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

    async def read(self, key: str) -> Record:
        name = encode_key(key)
        last = await self._last(name)
        if last is None or not self._live(name, last[0], last[1]):
            raise NotFound(f"no record for key {key!r}")
        return self._record(key, *last)

    async def exists(self, key: str) -> bool:
        name = encode_key(key)
        last = await self._last(name)
        return last is not None and self._live(name, last[0], last[1])

    async def delete(self, key: str) -> bool:
        name = encode_key(key)
        last = await self._last(name)
        if last is None or last[1].get(_OP) in {"DEL", "PURGE"}:
            return False
        live = self._live(name, last[0], last[1])
        await self._publish(name, b"", {_OP: "DEL"} if live else {_OP: "DEL", _REASON: "expire"})
        return live

    async def list(
        self, prefix: str = "", suffix: str = "", limit: int | None = None, offset: int = 0
    ) -> list[str]:
        validate_paging(limit, offset)
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise TypeError("prefix and suffix must be str")
        js = await self._jetstream()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def collect(msg: Any) -> None:
            queue.put_nowait(msg)

        names: list[str] = []
        with self._guard():
            sub = await js.subscribe(
                self._pre + ">",
                stream=self._stream,
                cb=collect,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                headers_only=True,
            )
            try:
                info = await sub.consumer_info()
                more = info.num_pending > 0 or info.delivered.consumer_seq > 0
                while more:
                    msg = await asyncio.wait_for(queue.get(), self._timeout)
                    name = msg.subject[len(self._pre) :]
                    try:
                        live = self._live(name, msg.metadata.sequence.stream, msg.headers or {})
                    except DecodeError:
                        live = True  # it exists; reading it says what is wrong
                    if live:
                        names.append(name)
                    more = msg.metadata.num_pending > 0
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        return page(_decodable_keys(names), prefix, suffix, limit, offset)

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
        js = await self._jetstream()
        nc = self._nc

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
        with self._guard():
            sub = await js.subscribe(
                self._pre + ">",
                stream=self._stream,
                cb=deliver,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.NEW,
            )

        async def monitor() -> None:
            # nats-py offers no awaitable for "closed for good"; poll it.
            while nc is not None and not nc.is_closed:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            fail(ConnectionFailed(f"NATS connection to {self._redacted} lost"))

        task = asyncio.get_running_loop().create_task(monitor())

        async def unsubscribe() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
