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

Queue groups, exactly once across processes, fairly shared. Every process
with a member of group (pattern, queue) receives every message through
pub/sub. Before a member's handler runs it claims the message with `SET
{prefix}claim:{id}:{pattern}:{queue} 1 NX PX claim_ttl` (default 60 s): only
the first claimer across all processes handles it. Who tries first is
decided by rendezvous hashing of the message id over the group's members,
which each broker registers (with a heartbeat) in the sorted set
`{prefix}group:{queue}@{pattern}`: the preferred member claims at once, the
others only after `group_fallback` seconds (default 0.25), which covers a
preferred member that died, is too busy to reach the message, or joined so
recently that this process has not seen it yet. Equal members therefore
get equal shares instead of the quickest process taking everything. A join
or leave is announced on a control channel so every member's view follows
within a round trip; the heartbeat (`group_heartbeat`, default 1 s) expires
members of processes that vanished. Like pub/sub itself, claims give
at-most-once delivery if no member is connected.

Unsubscribing drains: the subscription keeps receiving until a PING sent on
the pub/sub connection after the unsubscribe comes back, so everything the
server sent before is handled.

Redis Cluster (``redis+cluster://n1:7000,n2:7000/``): classic PUBLISH reaches
every node, so the pub/sub connection may be to any node (redis-py picks the
master of the first channel's slot); when that node is lost it subscribes
again on a node of the new slot map. The broker's keys (streams, queue
groups, claims) carry one hash tag, ``{prefix}`` (``{microstd:broker:}`` when
the prefix is empty), so the publish script's keys share one slot: a
broker's streams live on one shard.

Connection, timeouts and errors are `microstd._engines.redis`'s: options
``connect_timeout`` (5 s), ``timeout`` (5 s) and ``ping_interval`` (10 s), in
the URL or as keywords. The pub/sub connection is checked with a PING when it
has been silent for ``ping_interval``. When it is lost (or fails that check)
the broker logs it, passes a `ConnectionFailed` to its `on_error` hook with
each subscription, and reconnects on its own, subscribing again to everything;
once back it passes a `ConnectionRestored`. Messages published while it was
down are not delivered (pub/sub is at most once). A `publish` that raised
`ConnectionFailed` may still have been delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from microstd import codec
from microstd._backends import ParsedURL
from microstd._engines import redis as engine
from microstd._engines.redis_cluster import hash_tag
from microstd.broker._durable import (
    DurableOptions,
    StreamInfo,
    declared_stream,
    validate_name,
)
from microstd.broker._groups import ClaimedMessage, Group, preferred_member
from microstd.broker._network import (
    ENVELOPE_VERSION,
    MalformedEnvelope,
    NetworkBroker,
    NetworkSubscription,
    parse_envelope,
    query_options,
)
from microstd.broker._redis_streams import RedisStreams
from microstd.broker._subjects import matches, validate_pattern, validate_subject
from microstd.broker.base import Handler, Message, Subscription, log
from microstd.errors import (
    Closed,
    ConnectionFailed,
    ConnectionRestored,
    InvalidTopic,
)

__all__ = ["RedisBroker", "glob_for", "preferred_member"]

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]^"})
#: The control channel's name holds a space, which no topic may: it never
#: collides with a topic, and the topic globs' matches on it are ignored.
_CONTROL = "microstd groups"
#: The keys' prefix on a cluster when the broker's prefix is empty (keys need a hash tag).
DEFAULT_CLUSTER_KEYS = "microstd:broker:"
# Pause between reconnection attempts of the pub/sub reader (doubling).
_RETRY_MIN = 0.1
_RETRY_MAX = 2.0


def glob_for(pattern: str) -> str:
    """The Redis glob that matches a superset of the subjects `pattern` matches."""
    return ".".join(
        "*" if t in ("*", ">") else t.translate(_GLOB_SPECIAL) for t in pattern.split(".")
    )


class RedisBroker(NetworkBroker):
    """Async broker on Redis pub/sub with claimed, fairly shared queue groups."""

    def __init__(
        self,
        url: str | engine.RedisEndpoint,
        *,
        prefix: str = "",
        claim_ttl: float = 60.0,
        group_heartbeat: float = 1.0,
        group_fallback: float = 0.25,
        **options: Any,
    ) -> None:
        for name, value in (
            ("group_heartbeat", group_heartbeat),
            ("group_fallback", group_fallback),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be positive seconds, got {value!r}")
        if isinstance(url, engine.RedisEndpoint):
            self._endpoint = url
        else:
            self._endpoint, options = engine.RedisEndpoint.from_url(url, options)
        super().__init__(**options)
        self._prefix = prefix
        # Where the broker's keys live (streams, queue groups, claims): under the
        # prefix, and on a cluster under one hash tag, so the publish script's
        # keys (the stream list and the stream it appends to) share one slot.
        self._keys = hash_tag(prefix or DEFAULT_CLUSTER_KEYS) if self._endpoint.cluster else prefix
        self._claim_ms = max(1, int(float(claim_ttl) * 1000))
        self._heartbeat_s = float(group_heartbeat)
        self._fallback_s = float(group_fallback)
        self._uid = os.urandom(8).hex()
        self._member_seq = 0
        self._conn: engine.RedisConnection | None = None
        self._redis: Any = None
        self._pubsub: engine.Subscriber | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._globs: dict[str, list[NetworkSubscription]] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._pongs: dict[str, asyncio.Future[None]] = {}
        self._groups: dict[tuple[str, str], Group] = {}
        self._control = f"{prefix}{_CONTROL}"
        self._control_ready: asyncio.Future[None] | None = None
        self._streams = RedisStreams(self)

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> RedisBroker:
        # Every query option is the broker's or the engine's (none goes to redis-py).
        merged = query_options(url.query, options)
        endpoint, rest = engine.RedisEndpoint.from_url(url.raw.split("?", 1)[0], merged)
        return cls(endpoint, **rest)

    def __repr__(self) -> str:
        return f"RedisBroker({self._endpoint.redacted!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"broker {what}")

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._conn is not None:
            return
        conn = await engine.acquire(self._endpoint)
        try:
            await conn.ping("broker connect")
        except BaseException:
            await engine.release(conn)
            raise
        self._conn = conn
        self._redis = conn.client
        self._pubsub = conn.subscriber()

    async def ping(self) -> None:
        """One round trip to the server (readiness checks); `ConnectionFailed` if none."""
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        await self._conn.ping("broker ping")

    async def _client(self) -> Any:
        if self._closed:
            raise Closed("broker is closed")
        if self._redis is None:
            await self.connect()
        return self._redis

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> Subscription:
        validate_pattern(pattern)
        durable_options = DurableOptions.parse(pattern, durable, options)
        if durable_options is not None:
            if queue is not None and (not queue or any(c.isspace() for c in queue)):
                raise InvalidTopic("queue names must be non-empty and without whitespace")
            if not callable(handler):
                raise TypeError("handler must be callable")
            await self._client()
            return await self._streams.subscribe(pattern, handler, queue, durable_options)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        await self._client()
        pubsub = self._pubsub
        assert pubsub is not None
        wait = self._endpoint.timeouts.request

        sub = NetworkSubscription(self, pattern, queue)
        gate = self._claimer(pattern, queue) if queue is not None else None
        delivery = self._new_delivery(sub, handler, gate)
        glob = self._prefix.translate(_GLOB_SPECIAL) + glob_for(pattern)
        members = self._globs.setdefault(glob, [])
        members.append(sub)
        member_id = None
        try:
            if queue is not None:
                member_id = await self._join(pattern, queue, sub)
            if len(members) == 1:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirm[glob] = confirmed
                await pubsub.psubscribe(glob, confirm=False)
                self._start_reader()
                await asyncio.wait_for(asyncio.shield(confirmed), wait)
            elif glob in self._confirm:
                await asyncio.wait_for(asyncio.shield(self._confirm[glob]), wait)
        except (ConnectionFailed, asyncio.TimeoutError) as exc:
            members.remove(sub)
            if member_id is not None:
                self._groups[(pattern, queue or "")].local.pop(member_id, None)
            delivery.stop()
            if isinstance(exc, ConnectionFailed):
                raise
            raise ConnectionFailed(
                f"broker subscribe: Redis at {self._endpoint.redacted} did not confirm in time"
            ) from exc

        async def cancel(drain: bool) -> None:
            if drain:
                # Everything the server sent before this PING is read (and
                # handed to the delivery) before its answer comes back.
                await self._barrier()
            group = self._globs.get(glob, [])
            if sub in group:
                group.remove(sub)
            if member_id is not None and queue is not None:
                await self._leave(pattern, queue, member_id)
            if not group:
                self._globs.pop(glob, None)
                self._confirm.pop(glob, None)
                with contextlib.suppress(ConnectionFailed):
                    await pubsub.punsubscribe(glob)

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    # --- queue groups -----------------------------------------------------------

    async def _join(self, pattern: str, queue: str, sub: NetworkSubscription) -> str:
        """Register `sub` as a member of the group and learn the group's members."""
        key = (pattern, queue)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(f"{self._keys}group:{queue}@{pattern}")
        self._member_seq += 1
        member_id = f"{self._uid}.{self._member_seq}"
        group.local[member_id] = sub
        await self._listen_control()
        await self._refresh(group)
        with self._errors("subscribe"):
            await self._redis.publish(self._control, group.key)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat())
        return member_id

    async def _leave(self, pattern: str, queue: str, member_id: str) -> None:
        group = self._groups.get((pattern, queue))
        if group is None:
            return
        group.local.pop(member_id, None)
        with contextlib.suppress(ConnectionFailed), self._errors("unsubscribe"):
            await self._redis.zrem(group.key, member_id)
            await self._redis.publish(self._control, group.key)
        if not group.local:
            self._groups.pop((pattern, queue), None)

    async def _listen_control(self) -> None:
        assert self._pubsub is not None
        if self._control_ready is None:
            self._control_ready = asyncio.get_running_loop().create_future()
            await self._pubsub.subscribe(self._control, confirm=False)
            self._start_reader()
        try:
            await asyncio.wait_for(
                asyncio.shield(self._control_ready), self._endpoint.timeouts.request
            )
        except asyncio.TimeoutError:
            raise ConnectionFailed(
                f"broker subscribe: Redis at {self._endpoint.redacted} did not confirm in time"
            ) from None

    async def _refresh(self, group: Group) -> None:
        """Renew this broker's members of `group` and read who is alive."""
        now = int(time.time() * 1000)
        ttl = int(self._heartbeat_s * 3000)
        pipe = self._redis.pipeline(transaction=False)
        if group.local:
            pipe.zadd(group.key, dict.fromkeys(group.local, now + ttl))
        pipe.zremrangebyscore(group.key, "-inf", now)
        pipe.zrange(group.key, 0, -1)
        pipe.pexpire(group.key, ttl * 2)
        with self._errors("queue group"):
            replies = await pipe.execute()
        group.view = sorted(_text(m) or "" for m in replies[-2])

    async def _beat(self) -> None:
        while self._groups:
            await asyncio.sleep(self._heartbeat_s)
            for group in list(self._groups.values()):
                try:
                    await self._refresh(group)
                except ConnectionFailed as exc:
                    log.warning("Redis broker: queue group heartbeat failed: %s", exc)

    def _on_control(self, data: object) -> None:
        name = _text(data)
        for group in self._groups.values():
            if group.key == name:
                task = asyncio.ensure_future(self._refresh(group))
                task.add_done_callback(_quiet)

    def _claimer(self, pattern: str, queue: str) -> Any:
        async def claim(message: Message) -> bool:
            msgid = getattr(message, "msgid", None)
            if msgid is None:
                return True
            key = f"{self._keys}claim:{msgid}:{pattern}:{queue}"
            with self._errors("queue group claim"):
                return bool(await self._redis.set(key, b"1", nx=True, px=self._claim_ms))

        return claim

    # --- reading ------------------------------------------------------------------

    async def _barrier(self) -> None:
        """Return once everything the server sent before now has been dispatched."""
        assert self._pubsub is not None
        token = os.urandom(8).hex()
        pong = asyncio.get_running_loop().create_future()
        self._pongs[token] = pong
        try:
            await self._pubsub.ping(token)
            await asyncio.wait_for(pong, self._opts.drain_timeout)
        except (ConnectionFailed, asyncio.TimeoutError) as exc:
            log.warning("Redis broker: drain barrier failed: %s", exc)
        finally:
            self._pongs.pop(token, None)

    async def _read(self) -> None:
        """The one reader of the pub/sub connection: dispatches what arrives, and
        reconnects after a loss (redis-py then subscribes again to everything)."""
        pubsub = self._pubsub
        assert pubsub is not None
        t = self._endpoint.timeouts
        lost: ConnectionFailed | None = None
        pause = _RETRY_MIN
        while True:
            if not pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            try:
                raw = await pubsub.read(min(t.ping_interval, t.request))
            except ConnectionFailed as exc:
                if lost is None:
                    lost = exc
                    self._connection_event(
                        ConnectionFailed(
                            f"connection lost ({exc}); reconnecting, messages published"
                            " until it is back are not delivered"
                        )
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX)
                continue
            if lost is not None:
                lost, pause = None, _RETRY_MIN
                self._connection_event(ConnectionRestored("connection restored; receiving again"))
            if raw is None:
                continue
            try:
                self._on_raw(raw)
            except Exception as exc:  # a bug here must not end every subscription
                log.exception("Redis broker: delivering a message failed", exc_info=exc)

    def _on_raw(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        channel = _text(raw.get("channel")) or ""
        if kind == "pmessage":
            glob = _text(raw.get("pattern"))
            if glob is not None and channel != self._control:
                self._dispatch(glob, channel, raw.get("data"))
        elif kind == "message" and channel == self._control:
            self._on_control(raw.get("data"))
        elif kind == "pong":
            pong = self._pongs.get(_text(raw.get("data")) or "")
            if pong is not None and not pong.done():
                pong.set_result(None)
        elif kind == "psubscribe":
            # A subscribe confirmation names the glob in its `channel` field.
            confirmed = self._confirm.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "subscribe" and channel == self._control:
            ready = self._control_ready
            if ready is not None and not ready.done():
                ready.set_result(None)

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
        message = ClaimedMessage(msgid, topic, body, headers, content_type)
        routed: set[tuple[str, str]] = set()
        for sub in subs:
            if not matches(sub.pattern, topic):
                continue
            if sub.queue is None:
                if sub.delivery is not None:
                    sub.delivery.push(message)
                continue
            key = (sub.pattern, sub.queue)
            group = self._groups.get(key)
            if key in routed or group is None:
                continue
            routed.add(key)
            group.route(message, self._fallback_s)

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        envelope = codec.msgpack.dumps(
            [ENVELOPE_VERSION, os.urandom(16).hex(), headers, content_type, data]
        )
        await self._client()
        with self._errors("publish"):
            # One script: PUBLISH for core subscribers, XADD if a stream retains it.
            await self._streams.publish(topic, envelope, headers, content_type, data)

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        patterns, limits = declared_stream(name, subjects, max_age, max_count, max_bytes)
        await self._client()
        await self._streams.add_stream(name, patterns, limits)
        return await self._added_stream(name)

    async def streams(self) -> list[StreamInfo]:
        await self._client()
        return await self._streams.infos()

    async def delete_stream(self, name: str) -> None:
        await self._client()
        await self._streams.delete_stream(validate_name(name, "stream"))

    async def delete_durable(self, stream: str, name: str) -> None:
        await self._client()
        await self._streams.delete_durable(
            validate_name(stream, "stream"), validate_name(name, "durable")
        )

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._close_subscriptions()
        finally:
            self._closed = True
            for task in (self._heartbeat, self._reader):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._pubsub is not None:
                await self._pubsub.aclose()
            conn, self._conn = self._conn, None
            if conn is not None:
                await engine.release(conn)
            self._redis = self._pubsub = None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _quiet(task: asyncio.Future[None]) -> None:
    # A failed view refresh is retried by the next heartbeat.
    if not task.cancelled() and task.exception() is not None:
        log.warning("Redis broker: queue group refresh failed: %s", task.exception())
