"""`postgresql://`: core pub/sub on LISTEN/NOTIFY, with fairly shared queue groups.

    broker = microstd.broker.open("postgresql://app@db:5432/app?table=app_broker")

A publish is one call of the function ``<table>_publish`` (default table
``microstd_broker``): it NOTIFYs channel ``<table>`` with the topic and the
message envelope (the one every network broker writes) and, when a stream
retains the topic, appends it to the stream and queues it for the stream's
durable subscriptions, all in one transaction (see `_postgres_durable`).
NOTIFY payloads are limited to 8000 bytes: a larger message is stored in
``<table>_bodies`` and the notification carries its row id; the receivers
read it back (in order: one task per broker dispatches, so each
subscription still sees messages in publish order). Stored bodies are deleted
after ``body_retention`` seconds (default 60): a receiver that reads one later
misses that message (core pub/sub is at most once).

All subscriptions of a process share the engine's one listening connection;
topic patterns are matched in the process (NATS semantics).

Queue groups are exactly once across processes: before a member's handler
runs it claims the message with an INSERT into ``<table>_claims`` (the first
claimer wins). Who claims first is decided by rendezvous hashing of the
message id over the group's members, which each broker registers (with a
heartbeat, ``group_heartbeat`` = 1 s) in ``<table>_members``: the preferred
member claims at once, the others after ``group_fallback`` seconds (0.25), so
equal members get equal shares and a vanished member's share is still taken.

When the listening connection is lost the broker passes a `ConnectionFailed`
to its `on_error` hook with each subscription, reconnects on its own, and once
back passes a `ConnectionRestored`; messages published meanwhile are not
delivered. A `publish` that raised `ConnectionFailed` may still have been sent.

Durable subscriptions (`durable=NAME`) keep their streams, positions and
unacked messages in tables: a table queue members take from with
``FOR UPDATE SKIP LOCKED``, woken by NOTIFY (see `_postgres_durable` and
`_postgres_sql`).

Connection, pool, timeouts and errors are `microstd._engines.postgres`'s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from microstd import codec
from microstd._backends import ParsedURL
from microstd._engines import postgres as engine
from microstd.broker import _postgres_sql as durable_sql
from microstd.broker._durable import DurableOptions, StreamInfo
from microstd.broker._groups import ClaimedMessage, Group
from microstd.broker._network import (
    ENVELOPE_VERSION,
    MalformedEnvelope,
    NetworkBroker,
    NetworkSubscription,
    parse_envelope,
)
from microstd.broker._postgres_durable import DurableStreams
from microstd.broker._streams_pure import message_size
from microstd.broker._subjects import matches, validate_pattern, validate_subject
from microstd.broker.base import Handler, Message, Subscription, log
from microstd.errors import Closed, ConnectionFailed, ConnectionRestored, InvalidTopic

__all__ = ["PostgresBroker"]

DEFAULT_TABLE = "microstd_broker"
SCHEMA_VERSION = 1
# Under PostgreSQL's 8000-byte NOTIFY payload limit, with room for the topic.
_INLINE_LIMIT = 7000
_OPTIONS = (
    "table",
    "body_retention",
    "claim_ttl",
    "group_heartbeat",
    "group_fallback",
    "max_pending",
    "overflow",
    "drain_timeout",
)
_FLOATS = ("body_retention", "claim_ttl", "group_heartbeat", "group_fallback", "drain_timeout")


def _ddl(t: str) -> str:
    return f"""
CREATE TABLE {t}_bodies (
    id bigserial PRIMARY KEY,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {t}_claims (
    msgid text NOT NULL,
    grp text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msgid, grp)
);
CREATE INDEX {t}_claims_age ON {t}_claims (created_at);
CREATE TABLE {t}_members (
    grp text NOT NULL,
    member text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (grp, member)
);
"""


class PostgresBroker(NetworkBroker):
    """Async broker on PostgreSQL LISTEN/NOTIFY (see the module docstring)."""

    def __init__(
        self,
        url: str | engine.PostgresEndpoint,
        *,
        table: str = DEFAULT_TABLE,
        body_retention: float = 60.0,
        claim_ttl: float = 60.0,
        group_heartbeat: float = 1.0,
        group_fallback: float = 0.25,
        **options: Any,
    ) -> None:
        if isinstance(url, engine.PostgresEndpoint):
            self._endpoint = url
        else:
            self._endpoint, options = engine.PostgresEndpoint.from_url(url, options)
        super().__init__(**options)
        t = self._table = engine.identifier(table)
        self._control = f"{t}_ctl"
        self._retention = float(body_retention)
        self._claim_ttl = float(claim_ttl)
        self._heartbeat_s = float(group_heartbeat)
        self._fallback_s = float(group_fallback)
        self._uid = os.urandom(6).hex()
        self._member_seq = 0
        self._conn: engine.PostgresConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._unlisten: list[Callable[[], Awaitable[None]]] = []
        self._groups: dict[tuple[str, str], Group] = {}
        self._items: deque[str] = deque()
        self._wake = asyncio.Event()
        self._pongs: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lost = False
        self._durables = DurableStreams(
            t,
            self._db,
            self._publish_raw,
            lambda: self._opts.hook,
            lambda: self._opts.drain_timeout,
            self._heartbeat_s,
            self._uid,
        )
        self._sql_body = f"SELECT data FROM {t}_bodies WHERE id = $1"
        self._sql_claim = (
            f"INSERT INTO {t}_claims (msgid, grp) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING 1"
        )
        self._sql_join = (
            f"INSERT INTO {t}_members (grp, member, expires_at)"
            " SELECT $1, m, $3 FROM unnest($2::text[]) AS m"
            " ON CONFLICT (grp, member) DO UPDATE SET expires_at = excluded.expires_at"
        )
        self._sql_view = (
            f"WITH gone AS (DELETE FROM {t}_members WHERE grp = $1 AND expires_at < $2)"
            f" SELECT member FROM {t}_members WHERE grp = $1 AND expires_at >= $2"
        )
        self._sql_leave = f"DELETE FROM {t}_members WHERE grp = $1 AND member = $2"
        self._sql_control = f"SELECT pg_notify('{self._control}', $1)"
        self._sql_purge = (
            f"WITH b AS (DELETE FROM {t}_bodies"
            " WHERE created_at < now() - make_interval(secs => $1))"
            f" DELETE FROM {t}_claims WHERE created_at < now() - make_interval(secs => $2)"
        )

    @classmethod
    def from_url(cls, parsed: ParsedURL, **options: Any) -> PostgresBroker:
        """`postgresql://[user[:password]@]host[:port]/db`; the broker's options may be in
        the query (`table`, `body_retention`, `claim_ttl`, `group_heartbeat`, ...)."""
        endpoint, mine = engine.PostgresEndpoint.from_url(parsed, options, area=_OPTIONS)
        for name in _FLOATS:
            if isinstance(mine.get(name), str):
                mine[name] = float(mine[name])
        if isinstance(mine.get("max_pending"), str):
            mine["max_pending"] = int(mine["max_pending"])
        return cls(endpoint, **mine)

    def __repr__(self) -> str:
        return f"PostgresBroker({self._endpoint.redacted!r}, table={self._table!r})"

    # -- connection ------------------------------------------------------------------

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._conn is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None:
                return
            conn = await engine.acquire(self._endpoint)
            try:
                await conn.schema(f"broker:{self._table}", SCHEMA_VERSION, _ddl(self._table))
                await conn.schema(
                    f"broker-streams:{self._table}",
                    durable_sql.SCHEMA_VERSION,
                    durable_sql.DDL(self._table),
                )
            except BaseException:
                await engine.release(conn)
                raise
            self._conn = conn

    async def _db(self) -> engine.PostgresConnection:
        if self._closed:
            raise Closed("broker is closed")
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        return self._conn

    async def ping(self) -> None:
        """One round trip to the server (readiness checks); `ConnectionFailed` if none."""
        await (await self._db()).ping("broker ping")

    async def _listening(self) -> None:
        """LISTEN on the message and control channels (once), and start the dispatcher."""
        if self._unlisten:
            return
        db = await self._db()
        listener = db.listener()
        stop = await listener.listen(
            self._table, self._on_notify, resync=self._on_back, lost=self._on_lost
        )
        self._unlisten.append(stop)
        self._unlisten.append(await listener.listen(self._control, self._on_control))
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._dispatch_loop()))
        self._tasks.append(loop.create_task(self._maintain()))

    def _on_lost(self, exc: ConnectionFailed) -> None:
        self._lost = True
        self._connection_event(
            ConnectionFailed(
                f"connection lost ({exc}); reconnecting, messages published"
                " until it is back are not delivered"
            )
        )

    def _on_back(self) -> None:
        if self._lost:
            self._lost = False
            self._connection_event(ConnectionRestored("connection restored; receiving again"))

    # -- subscribing -----------------------------------------------------------------

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
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        await self._listening()  # also reports a lost connection to durable subscribers
        if durable_options is not None:
            return await self._durables.subscribe(pattern, handler, queue, durable_options)
        sub = NetworkSubscription(self, pattern, queue)
        gate = self._claimer(pattern, queue) if queue is not None else None
        self._new_delivery(sub, handler, gate)
        member_id = None
        if queue is not None:
            member_id = await self._join(pattern, queue, sub)

        async def cancel(drain: bool) -> None:
            if drain:
                await self._barrier()
            if member_id is not None and queue is not None:
                await self._leave(pattern, queue, member_id)

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    # -- queue groups ----------------------------------------------------------------

    async def _join(self, pattern: str, queue: str, sub: NetworkSubscription) -> str:
        key = (pattern, queue)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(f"{queue}@{pattern}")
        self._member_seq += 1
        member_id = f"{self._uid}.{self._member_seq}"
        group.local[member_id] = sub
        try:
            await self._refresh(group)
            db = await self._db()
            await db.execute("subscribe", self._sql_control, group.key)
        except BaseException:
            group.local.pop(member_id, None)
            raise
        return member_id

    async def _leave(self, pattern: str, queue: str, member_id: str) -> None:
        group = self._groups.get((pattern, queue))
        if group is None:
            return
        group.local.pop(member_id, None)
        if not group.local:
            self._groups.pop((pattern, queue), None)
        with contextlib.suppress(ConnectionFailed, Closed):
            db = await self._db()
            await db.execute("unsubscribe", self._sql_leave, group.key, member_id)
            await db.execute("unsubscribe", self._sql_control, group.key)

    async def _refresh(self, group: Group) -> None:
        """Renew this broker's members of `group` and read who is alive."""
        db = await self._db()
        now = time.time()
        if group.local:
            await db.execute(
                "queue group",
                self._sql_join,
                group.key,
                list(group.local),
                now + self._heartbeat_s * 3,
            )
        rows = await db.fetch("queue group", self._sql_view, group.key, now, read=True)
        group.view = sorted(str(r[0]) for r in rows)

    async def _maintain(self) -> None:
        """Heartbeat the queue groups; purge old bodies and claims now and then."""
        last_purge = 0.0
        while True:
            await asyncio.sleep(self._heartbeat_s)
            for group in list(self._groups.values()):
                try:
                    await self._refresh(group)
                except (ConnectionFailed, Closed) as exc:
                    log.warning("PostgreSQL broker: queue group heartbeat failed: %s", exc)
            if time.monotonic() - last_purge > min(10.0, self._retention):
                last_purge = time.monotonic()
                with contextlib.suppress(ConnectionFailed, Closed):
                    db = await self._db()
                    await db.execute(
                        "broker purge", self._sql_purge, self._retention, self._claim_ttl
                    )

    def _on_control(self, payload: str) -> None:
        if payload.startswith("ping "):
            pong = self._pongs.get(payload[5:])
            if pong is not None:
                # Barriers ride the message queue, so they arrive after what came before.
                self._items.append(payload)
                self._wake.set()
            return
        for group in self._groups.values():
            if group.key == payload:
                task = asyncio.ensure_future(self._refresh(group))
                task.add_done_callback(_quiet)

    def _claimer(self, pattern: str, queue: str) -> Any:
        grp = f"{queue}@{pattern}"

        async def claim(message: Message) -> bool:
            msgid = getattr(message, "msgid", None)
            if msgid is None:
                return True
            db = await self._db()
            return await db.fetchval("queue group claim", self._sql_claim, msgid, grp) is not None

        return claim

    # -- receiving ---------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        self._items.append(payload)
        self._wake.set()

    async def _barrier(self) -> None:
        """Return once every notification sent before now has been dispatched."""
        token = os.urandom(8).hex()
        pong = asyncio.get_running_loop().create_future()
        self._pongs[token] = pong
        try:
            db = await self._db()
            await db.execute("unsubscribe", self._sql_control, f"ping {token}")
            await asyncio.wait_for(pong, self._opts.drain_timeout)
        except (ConnectionFailed, Closed, asyncio.TimeoutError) as exc:
            log.warning("PostgreSQL broker: drain barrier failed: %s", exc)
        finally:
            self._pongs.pop(token, None)

    async def _dispatch_loop(self) -> None:
        while True:
            while not self._items:
                self._wake.clear()
                await self._wake.wait()
            payload = self._items.popleft()
            try:
                await self._dispatch(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end every subscription
                log.exception("PostgreSQL broker: delivering a message failed", exc_info=exc)

    async def _dispatch(self, payload: str) -> None:
        if payload.startswith("ping "):
            pong = self._pongs.get(payload[5:])
            if pong is not None and not pong.done():
                pong.set_result(None)
            return
        topic, _, rest = payload.partition(" ")
        try:
            validate_subject(topic)
            if not any(matches(sub.pattern, topic) for sub in self._subs):
                return
            if rest.startswith("@"):
                data = await self._body(int(rest[1:]))
                if data is None:
                    log.warning("PostgreSQL broker: a stored body on %r was purged", topic[:200])
                    return
            else:
                data = base64.b64decode(rest, validate=True)
            msgid, headers, content_type, body = parse_envelope(data)
        except (InvalidTopic, MalformedEnvelope, ValueError, binascii.Error) as exc:
            log.warning(
                "PostgreSQL broker: skipped a malformed message on %r: %s", topic[:200], exc
            )
            return
        except ConnectionFailed as exc:
            log.warning("PostgreSQL broker: reading a stored body failed: %s", exc)
            return
        message = ClaimedMessage(msgid, topic, body, headers, content_type)
        routed: set[tuple[str, str]] = set()
        for sub in list(self._subs):
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

    async def _body(self, ident: int) -> bytes | None:
        db = await self._db()
        data = await db.fetchval("broker receive", self._sql_body, ident, read=True)
        return None if data is None else bytes(data)

    # -- publishing --------------------------------------------------------------------

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        envelope = codec.msgpack.dumps(
            [ENVELOPE_VERSION, os.urandom(16).hex(), headers, content_type, data]
        )
        size = message_size(Message(topic, data, headers, content_type))
        inline = (len(envelope) + 2) // 3 * 4 + len(topic.encode()) < _INLINE_LIMIT
        db = await self._db()
        await db.execute("publish", self._durables.sql.publish, topic, envelope, size, inline)

    # -- durable streams ----------------------------------------------------------------

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        await self._durables.add_stream(name, subjects, max_age, max_count, max_bytes)
        return await self._added_stream(name)

    async def streams(self) -> list[StreamInfo]:
        return await self._durables.streams()

    async def delete_stream(self, name: str) -> None:
        await self._durables.delete_stream(name)

    async def delete_durable(self, stream: str, name: str) -> None:
        await self._durables.delete_durable(stream, name)

    def _connection_event(self, exc: ConnectionFailed | ConnectionRestored) -> None:
        super()._connection_event(exc)
        hook = self._opts.hook
        if hook is None:
            return
        for sub in list(self._durables.subs):  # durable subscribers are told too
            try:
                hook(exc, sub)
            except Exception:
                log.exception("broker on_error hook raised")

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._durables.close()
            await self._close_subscriptions()
        finally:
            self._closed = True
            for task in self._tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for stop in self._unlisten:
                with contextlib.suppress(Exception):
                    await stop()
            self._unlisten = []
            conn, self._conn = self._conn, None
            if conn is not None:
                await engine.release(conn)


def _quiet(task: asyncio.Future[None]) -> None:
    # A failed view refresh is retried by the next heartbeat.
    if not task.cancelled() and task.exception() is not None:
        log.warning("PostgreSQL broker: queue group refresh failed: %s", task.exception())
