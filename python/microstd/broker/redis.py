"""`redis://`: Redis pub/sub through redis-py's asyncio client.

    broker = microstd.broker.open("redis://127.0.0.1:6379/0")

Matching. Redis patterns are globs, not tokens, so each subscription
pattern becomes a superset glob (`*` and `>` both become `*`, literal
tokens are escaped) and every message received on a glob is filtered with
the design's matcher (`_subjects.matches`) before delivery. Subscriptions
sharing a glob share one `PSUBSCRIBE`; each message is therefore seen once
per glob, and each subscription belongs to exactly one glob, so nothing is
delivered twice.

Envelope. A message is published as msgpack `[1, id, headers, content_type,
body]` on the channel `prefix + topic`; `id` is a random 128-bit hex.

Queue groups, exactly once across processes. Every process with a member
of group (pattern, queue) receives every message through pub/sub. Inside a
process one member is picked round robin; before its handler runs it
claims the message with `SET {prefix}claim:{id}:{pattern}:{queue} 1 NX PX
claim_ttl` (default 60 s). Only the first claimer across all processes
handles it. Atomic claims are simpler than streams with consumer groups
and keep pub/sub's fan-out for plain subscribers; like pub/sub itself,
they give at-most-once delivery if no member is connected. Within a process
the members take turns; across processes the first claimer wins, so the
split between processes follows who is quicker, not a rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from typing import Any

from microstd import codec
from microstd._backends import ParsedURL, redact
from microstd.broker._network import (
    ENVELOPE_VERSION,
    MalformedEnvelope,
    NetworkBroker,
    NetworkSubscription,
    parse_envelope,
    query_options,
)
from microstd.broker._subjects import matches, validate_pattern, validate_subject
from microstd.broker.base import Handler, Message, Subscription, encode_body, log
from microstd.errors import Closed, ConnectionFailed, InvalidTopic

__all__ = ["RedisBroker", "glob_for"]

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]^"})


def glob_for(pattern: str) -> str:
    """The Redis glob that matches a superset of the subjects `pattern` matches."""
    return ".".join(
        "*" if t in ("*", ">") else t.translate(_GLOB_SPECIAL) for t in pattern.split(".")
    )


class _RedisMessage(Message):
    __slots__ = ("msgid",)

    def __init__(
        self, msgid: str, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        super().__init__(topic, data, headers, content_type)
        self.msgid = msgid


class RedisBroker(NetworkBroker):
    """Async broker on Redis pub/sub with claimed queue groups."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        claim_ttl: float = 60.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._url = url
        self._prefix = prefix
        self._claim_ms = max(1, int(float(claim_ttl) * 1000))
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._globs: dict[str, list[NetworkSubscription]] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._turn: dict[tuple[str, str], int] = {}

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> RedisBroker:
        return cls(url.raw.split("?", 1)[0], **query_options(url.query, options))

    def __repr__(self) -> str:
        return f"RedisBroker({redact(self._url)!r})"

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._redis is not None:
            return
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis.from_url(self._url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise ConnectionFailed(f"cannot connect to Redis at {self!r}: {exc}") from exc
        self._redis = client
        self._pubsub = client.pubsub()

    async def _client(self) -> Any:
        if self._closed:
            raise Closed("broker is closed")
        if self._redis is None:
            await self.connect()
        return self._redis

    async def subscribe(
        self, pattern: str, handler: Handler, queue: str | None = None
    ) -> Subscription:
        validate_pattern(pattern)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        await self._client()
        from redis.exceptions import RedisError

        sub = NetworkSubscription(self, pattern, queue)
        gate = self._claimer(pattern, queue) if queue is not None else None
        delivery = self._new_delivery(sub, handler, gate)
        glob = self._prefix.translate(_GLOB_SPECIAL) + glob_for(pattern)
        members = self._globs.setdefault(glob, [])
        members.append(sub)
        try:
            if len(members) == 1:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirm[glob] = confirmed
                await self._pubsub.psubscribe(glob)
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read())
                await asyncio.wait_for(asyncio.shield(confirmed), 10)
            elif glob in self._confirm:
                await asyncio.wait_for(asyncio.shield(self._confirm[glob]), 10)
        except (RedisError, OSError, TimeoutError) as exc:
            members.remove(sub)
            delivery.stop()
            raise ConnectionFailed(f"Redis subscribe failed: {exc}") from exc

        async def cancel(drain: bool) -> None:
            # The shared reader pushes each message as it reads it: nothing to drain.
            del drain
            group = self._globs.get(glob, [])
            if sub in group:
                group.remove(sub)
            if not group:
                self._globs.pop(glob, None)
                self._confirm.pop(glob, None)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.punsubscribe(glob)

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    def _claimer(self, pattern: str, queue: str) -> Any:
        from redis.exceptions import RedisError

        async def claim(message: Message) -> bool:
            msgid = getattr(message, "msgid", None)
            if msgid is None:
                return True
            key = f"{self._prefix}claim:{msgid}:{pattern}:{queue}"
            try:
                return bool(await self._redis.set(key, b"1", nx=True, px=self._claim_ms))
            except (RedisError, OSError) as exc:
                raise ConnectionFailed(f"Redis claim failed: {exc}") from exc

        return claim

    async def _read(self) -> None:
        from redis.exceptions import RedisError

        pubsub = self._pubsub
        while True:
            try:
                if not pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                raw = await pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                log.warning("Redis pub/sub read failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if raw is None:
                continue
            kind = raw.get("type")
            glob = _text(raw.get("pattern"))
            if kind == "psubscribe":
                # A subscribe confirmation names the glob in its `channel` field.
                confirmed = self._confirm.get(_text(raw.get("channel")) or "")
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind == "pmessage" and glob is not None:
                try:
                    self._dispatch(glob, _text(raw.get("channel")) or "", raw.get("data"))
                except Exception as exc:  # a bug here must not end every subscription
                    log.exception("Redis broker: delivering a message failed", exc_info=exc)

    def _dispatch(self, glob: str, channel: str, data: object) -> None:
        subs = self._globs.get(glob)
        if not subs or not channel.startswith(self._prefix):
            return
        topic = channel[len(self._prefix) :]
        try:
            validate_subject(topic)
            msgid, headers, content_type, body = parse_envelope(data)
        except (InvalidTopic, MalformedEnvelope) as exc:
            # Anyone may publish on the channel: skip it (the payload stays out of
            # the log), and the subscription goes on.
            log.warning("Redis broker: skipped a malformed message on %r: %s", channel[:200], exc)
            return
        message = _RedisMessage(msgid, topic, body, headers, content_type)
        groups: dict[tuple[str, str], list[NetworkSubscription]] = {}
        for sub in subs:
            if not matches(sub.pattern, topic):
                continue
            if sub.queue is None:
                if sub.delivery is not None:
                    sub.delivery.push(message)
            else:
                groups.setdefault((sub.pattern, sub.queue), []).append(sub)
        for key, members in groups.items():
            turn = self._turn.get(key, 0)
            self._turn[key] = turn + 1
            chosen = members[turn % len(members)]
            if chosen.delivery is not None:
                chosen.delivery.push(message)

    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        validate_subject(topic)
        data, ct, hdrs = encode_body(body, content_type, headers)
        envelope = codec.msgpack.dumps([ENVELOPE_VERSION, os.urandom(16).hex(), hdrs, ct, data])
        client = await self._client()
        from redis.exceptions import RedisError

        try:
            await client.publish(self._prefix + topic, envelope)
        except (RedisError, OSError) as exc:
            raise ConnectionFailed(f"Redis publish failed: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._close_subscriptions()
        finally:
            self._closed = True
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            if self._pubsub is not None:
                await self._pubsub.aclose()
            if self._redis is not None:
                await self._redis.aclose()
            self._redis = self._pubsub = None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None
