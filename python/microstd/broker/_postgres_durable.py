"""Durable subscriptions of `postgresql://`: members, their settles, and stream admin.

The tables and SQL are in `_postgres_sql`. Here, per broker:

- each durable subscriber is a `Member`: a task that sends the settles its
  messages collected (one statement for all of them), then takes up to its
  room (`max_inflight` minus what it holds) of ready rows with one call of
  ``<t>_fetch``, and waits. It wakes on a NOTIFY (a publish queued rows for
  its durable, or a message was handed back), when the next deadline the
  fetch reported comes, and at the latest after `ack_wait`, so a missed
  notification delays a delivery by at most `ack_wait`;
- `DurableStreams` runs the members' heartbeat (rows in ``<t>_members``,
  so a fetch knows whether the durable has other live members), routes the
  wake-ups, and implements `add_stream` / `streams` / `delete_*`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from microstd._engines import postgres as engine
from microstd.broker import _postgres_sql as sql
from microstd.broker._delivery import report_error
from microstd.broker._durable import (
    DurableOptions,
    StreamInfo,
    covers,
    declared_stream,
    implicit_stream_name,
    refuse_overlap,
    validate_name,
)
from microstd.broker._durable_delivery import DurableDelivery, DurableMessage, Settler
from microstd.broker._memory_durable import to_info
from microstd.broker._network import MalformedEnvelope, parse_envelope
from microstd.broker._subjects import matches
from microstd.broker.base import Handler, Subscription, log
from microstd.errors import Closed, MicrostdError, NotFound

__all__ = ["DurableStreams", "DurableSubscription", "Member", "PgDurableMessage"]

#: Longest pause between attempts while the database cannot be reached.
_MAX_RETRY = 2.0
#: Seconds between sweeps of members that died without leaving (and how long
#: past their expiry their rows are kept).
_SWEEP_EVERY = 60.0

# A settle waiting to be sent: (count, how, delay, dead); `how` is "ack", "term",
# "nack", "release" or "progress".
_Op = tuple[int, str, float, bool]


class PgDurableMessage(DurableMessage):
    """A delivery of a durable subscription on `postgresql://`."""

    __slots__ = ("_member", "_seq")

    def __init__(
        self,
        member: Member,
        seq: int,
        count: int,
        msgid: str,
        topic: str,
        data: bytes,
        headers: dict[str, str],
        content_type: str,
    ) -> None:
        super().__init__(topic, data, headers, content_type, msgid, count, member.settler)
        self._member = member
        self._seq = seq

    def _send(self, how: str, delay: float, dead: bool) -> None:
        self._member.add(self._seq, (self._count, how, delay, dead))

    def _progress(self) -> None:
        self._member.add(self._seq, (self._count, "progress", self._member.ack_wait, False))


class Member:
    """One durable subscriber of this process (see the module docstring)."""

    def __init__(
        self,
        streams: DurableStreams,
        stream: str,
        options: DurableOptions,
        pattern: str,
        delivery: DurableDelivery,
        mid: str,
    ) -> None:
        self.streams = streams
        self.stream = stream
        self.name = options.durable
        self.pattern = pattern
        self.group = f"d:{stream}/{options.durable}"
        self.ack_wait = options.ack_wait
        self.capacity = options.max_inflight
        self.delivery = delivery
        self.settler = delivery.settler
        self.mid = mid
        self.inflight = 0
        self.paused = False
        self.closed = False
        self._ops: dict[int, _Op] = {}
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._io = asyncio.Lock()  # one statement at a time; held across a fetch's pushes
        self._next: float | None = None  # loop time of the next known deadline
        self._task: asyncio.Task[None] | None = None
        self._late: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Member({self.stream!r}, {self.name!r}, {self.mid!r})"

    def start(self) -> None:
        self._task = self._loop.create_task(self._run())

    def wake(self) -> None:
        self._wake.set()

    # -- settles -----------------------------------------------------------------------

    def add(self, seq: int, op: _Op) -> None:
        """Queue a settle of message `seq` (from any thread); never waits."""
        if threading.get_ident() == self._thread:
            self._add(seq, op)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: ack_wait redelivers
                self._loop.call_soon_threadsafe(self._add, seq, op)

    def _add(self, seq: int, op: _Op) -> None:
        final = op[1] != "progress"
        if final:
            self.inflight -= 1
        held = self._ops.get(seq)
        # One op per message and statement: a final settle replaces a progress report.
        if held is None or (final and held[1] == "progress"):
            self._ops[seq] = op
        if self.closed:
            # Settled after the member left (a handler that outlived the drain).
            task = self._loop.create_task(self._late_flush())
            self._late.add(task)
            task.add_done_callback(self._late.discard)
        else:
            self._wake.set()

    async def _late_flush(self) -> None:
        try:
            async with self._io:
                await self._flush()
        except (MicrostdError, Closed) as exc:
            log.warning("%r: a late settle was not sent (ack_wait redelivers): %s", self, exc)

    async def _flush(self) -> None:
        if not self._ops:
            return
        ops, self._ops = self._ops, {}
        n = len(ops)
        try:
            db = await self.streams.db()
            await db.execute(
                "durable settle",
                self.streams.sql.settle,
                [self.stream] * n,
                [self.name] * n,
                list(ops),
                [op[0] for op in ops.values()],
                [op[1] for op in ops.values()],
                [float(op[2]) for op in ops.values()],
                [self.mid] * n,
                [op[3] for op in ops.values()],
            )
        except BaseException:
            # Kept for the next attempt; every op is safe to apply twice (conditional on
            # the delivery count and owner, or a delete). Newer ops for a seq win.
            for seq, op in ops.items():
                self._ops.setdefault(seq, op)
            raise

    # -- fetching --------------------------------------------------------------------

    async def _fetch(self) -> None:
        room = self.capacity - self.inflight
        db = await self.streams.db()
        rows = await db.fetch(
            "durable fetch",
            self.streams.sql.fetch,
            self.stream,
            self.name,
            self.mid,
            room,
            self.ack_wait,
            time.time(),
        )
        now = self._loop.time()
        self._next = None
        for seq, count, topic, data, wait in rows:
            if seq is None:
                self._next = None if wait is None else now + max(0.0, float(wait))
                continue
            try:
                msgid, headers, content_type, body = parse_envelope(bytes(data))
            except MalformedEnvelope as exc:
                log.warning("%r: dropped a malformed stored message on %r: %s", self, topic, exc)
                self.inflight += 1
                self._add(seq, (count, "term", 0.0, False))
                continue
            self.inflight += 1
            message = PgDurableMessage(self, seq, count, msgid, topic, body, headers, content_type)
            self.delivery.push(message)

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                async with self._io:
                    await self._flush()
                    if not self.paused and self.inflight < self.capacity:
                        await self._fetch()
                failures = 0
            except (MicrostdError, Closed) as exc:
                failures += 1
                pause = min(_MAX_RETRY, 0.05 * 2**failures)
                if failures == 1 or failures % 20 == 0:
                    log.warning("%r: fetching failed, retrying: %s", self, exc)
                await asyncio.sleep(pause)
                continue
            except Exception:  # a bug here must not end the subscription silently
                log.exception("%r: fetching failed", self)
                await asyncio.sleep(_MAX_RETRY)
                continue
            await self._idle()

    async def _idle(self) -> None:
        if self._wake.is_set():
            return
        timeout: float | None
        if self.paused or self.inflight >= self.capacity:
            timeout = None  # nothing to take: only a settle wakes it
        else:
            # The polling fallback: never longer than ack_wait, so a delivery whose
            # NOTIFY was missed (a reconnect) is late by at most that.
            due = self._loop.time() + self.ack_wait
            if self._next is not None:
                due = min(due, self._next)
            timeout = max(0.005, due - self._loop.time())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # -- leaving ---------------------------------------------------------------------

    async def pause(self) -> None:
        """Take nothing more (returns once no fetch is under way)."""
        self.paused = True
        self._wake.set()
        async with self._io:
            pass

    async def close(self) -> None:
        """Send what was settled, hand back what it still holds, and leave the durable."""
        self.paused = True
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._io:
            with contextlib.suppress(MicrostdError, Closed):
                await self._flush()
            try:
                db = await self.streams.db()
                await db.execute(
                    "durable unsubscribe",
                    self.streams.sql.leave,
                    self.stream,
                    self.name,
                    self.mid,
                    self.group,
                )
            except (MicrostdError, Closed) as exc:
                # What it holds goes out again after ack_wait instead of at once.
                log.warning("%r: leaving failed (ack_wait redelivers what it held): %s", self, exc)


class DurableSubscription(Subscription):
    """A durable subscriber on `postgresql://`."""

    def __init__(self, streams: DurableStreams, pattern: str, queue: str | None) -> None:
        self._streams = streams
        self.pattern = pattern
        self.queue = queue
        self.delivery: DurableDelivery | None = None
        self.member: Member | None = None
        self._done = False

    def __repr__(self) -> str:
        name = self.member.name if self.member is not None else "?"
        return f"Subscription(pattern={self.pattern!r}, durable={name!r})"

    @property
    def dropped(self) -> int:
        return 0  # a durable never drops: it holds at most max_inflight

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._streams.hook())

    async def unsubscribe(self, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._streams.subs.discard(self)
        member, delivery = self.member, self.delivery
        if member is None or delivery is None:
            return
        self._streams.members.discard(member)
        await member.pause()
        await delivery.drain(self._streams.drain_timeout() if timeout is None else timeout)
        await delivery.settler.flush()
        await member.close()


class DurableStreams:
    """The durable half of one `PostgresBroker` (see the module docstring).

    `db()` is the broker's pool, `publish` its raw publish (for dead letters),
    `hook()` its error hook and `drain_timeout()` its drain time.
    """

    def __init__(
        self,
        table: str,
        db: Callable[[], Awaitable[engine.PostgresConnection]],
        publish: Any,
        hook: Callable[[], Any],
        drain_timeout: Callable[[], float],
        heartbeat: float,
        uid: str,
    ) -> None:
        self.table = table
        self.sql = sql.Statements(table)
        self.db = db
        self.hook = hook
        self.drain_timeout = drain_timeout
        self._publish = publish
        self._heartbeat_s = heartbeat
        self._uid = uid
        self._seq = 0
        self.members: set[Member] = set()
        self.subs: set[DurableSubscription] = set()
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._sweep = f"DELETE FROM {table}_members WHERE grp LIKE 'd:%' AND expires_at < $1"
        self._join = (
            f"INSERT INTO {table}_members (grp, member, expires_at)"
            " SELECT g, m, $3 FROM unnest($1::text[], $2::text[]) AS x(g, m)"
            " ON CONFLICT (grp, member) DO UPDATE SET expires_at = excluded.expires_at"
        )

    # -- subscribing -----------------------------------------------------------------

    async def subscribe(
        self, pattern: str, handler: Handler, queue: str | None, options: DurableOptions
    ) -> DurableSubscription:
        db = await self.db()
        stream = await self._stream_for(db, pattern)
        await self._open_durable(db, stream, options, pattern)
        await self._listen(db)
        sub = DurableSubscription(self, pattern, queue)
        settler = Settler(options, self._publish, asyncio.get_running_loop())
        delivery = DurableDelivery(handler, settler=settler, report=sub.report, impl="python")
        self._seq += 1
        member = Member(self, stream, options, pattern, delivery, f"{self._uid}.d{self._seq}")
        sub.delivery, sub.member = delivery, member
        try:
            await self._announce([member])  # live before its first fetch
        except BaseException:
            delivery.stop()
            raise
        self.members.add(member)
        self.subs.add(sub)
        member.start()
        if self._beat is None or self._beat.done():
            self._beat = asyncio.get_running_loop().create_task(self._heartbeat())
        return sub

    async def _stream_for(self, db: engine.PostgresConnection, pattern: str) -> str:
        for name, subjects in await db.fetch("durable subscribe", self.sql.stream_names):
            if any(covers(s, pattern) for s in subjects):
                return str(name)
        name = implicit_stream_name(pattern)
        try:
            await self.add_stream(name, [pattern], None, None, None)
        except ValueError as exc:
            raise ValueError(
                f"no stream covers {pattern!r} and one of its own would overlap another"
                f" ({exc}): add a stream whose subjects cover it (broker.add_stream)"
            ) from None
        return name

    async def _open_durable(
        self, db: engine.PostgresConnection, stream: str, options: DurableOptions, pattern: str
    ) -> None:
        st = self.sql
        name = options.durable
        regex = sql.subjects_regex([pattern])
        kind, when, seq = options.start_fields()
        async with db.connection("durable subscribe") as conn, conn.transaction():
            # The stream's row lock: no publish commits between the backfill and the
            # durable becoming visible to the publishes after it.
            if await conn.fetchval(st.lock_stream, stream) is None:
                raise NotFound(f"no stream {stream!r}")
            found = await conn.fetchval(st.find_durable, stream, name)
            if found is not None:
                if found != pattern:
                    raise ValueError(
                        f"durable {name!r} of stream {stream!r} filters {found!r}, not"
                        f" {pattern!r}: use another durable name, or delete it first"
                    )
                return
            await conn.execute(st.add_durable, stream, name, pattern, regex)
            if kind != "new":
                await conn.execute(
                    st.backfill,
                    stream,
                    name,
                    regex,
                    seq if kind == "sequence" else 0,
                    when if kind == "time" else 0.0,
                )

    # -- wake-ups and liveness -------------------------------------------------------

    async def _listen(self, db: engine.PostgresConnection) -> None:
        if self._unlisten is None:
            self._unlisten = await db.listener().listen(
                f"{self.table}_d", self._on_notify, resync=self._wake_all
            )

    def _on_notify(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        stream, _, what = rest.partition(" ")
        for member in self.members:
            if member.stream != stream:
                continue
            if (kind == "p" and matches(member.pattern, what)) or (
                kind == "w" and member.name == what
            ):
                member.wake()

    def _wake_all(self) -> None:
        # The listening connection came back: notifications sent meanwhile are gone.
        for member in self.members:
            member.wake()

    async def _announce(self, members: list[Member]) -> None:
        db = await self.db()
        await db.execute(
            "durable heartbeat",
            self._join,
            [m.group for m in members],
            [m.mid for m in members],
            time.time() + 3 * self._heartbeat_s,
        )

    async def _heartbeat(self) -> None:
        last_sweep = 0.0
        while self.members:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self._announce(list(self.members))
                if time.monotonic() - last_sweep > _SWEEP_EVERY:
                    # Rows of members whose process died without leaving.
                    last_sweep = time.monotonic()
                    db = await self.db()
                    await db.execute("durable heartbeat", self._sweep, time.time() - _SWEEP_EVERY)
            except (MicrostdError, Closed) as exc:
                log.warning("PostgreSQL broker: durable heartbeat failed: %s", exc)

    async def close(self) -> None:
        """Stop every durable subscriber (draining each) and stop listening."""
        subs = list(self.subs)
        results = await asyncio.gather(*(s.unsubscribe() for s in subs), return_exceptions=True)
        for sub, result in zip(subs, results, strict=True):
            if isinstance(result, BaseException):
                report_error(result, sub, None)
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        stop, self._unlisten = self._unlisten, None
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()

    # -- streams -----------------------------------------------------------------------

    async def add_stream(
        self,
        name: str,
        subjects: object,
        max_age: object,
        max_count: object,
        max_bytes: object,
    ) -> None:
        patterns, limits = declared_stream(name, subjects, max_age, max_count, max_bytes)
        st = self.sql
        db = await self.db()
        async with db.connection("add_stream") as conn, conn.transaction():
            await conn.execute(st.lock_streams, f"{self.table}_streams")
            refuse_overlap(name, patterns, await conn.fetch(st.stream_names))
            await conn.execute(
                st.upsert_stream,
                name,
                patterns,
                sql.subjects_regex(patterns),
                limits.max_age,
                limits.max_count,
                limits.max_bytes,
            )
            await conn.execute(st.evict, name)

    async def streams(self) -> list[StreamInfo]:
        db = await self.db()
        st = self.sql
        found = await db.fetch("streams", st.info_streams, read=True)
        aged = [r[0] for r in found if r[2] is not None]
        if aged:
            for name in aged:  # age limits take effect without a publish too
                await db.execute("streams", st.evict, name)
            found = await db.fetch("streams", st.info_streams, read=True)
        durables: dict[str, list[dict[str, Any]]] = {}
        for row in await db.fetch("streams", st.info_durables, time.time(), read=True):
            stream, name, pattern, dead, waiting, unacked, redelivered, consumers = row
            durables.setdefault(stream, []).append(
                {
                    "name": name,
                    "pattern": pattern,
                    "pending": int(waiting),
                    "unacked": int(unacked),
                    "redelivered": int(redelivered),
                    "dead_lettered": int(dead),
                    "consumers": int(consumers),
                }
            )
        out = []
        for name, subjects, max_age, max_count, max_bytes, last_seq, msgs, size in found:
            out.append(
                to_info(
                    {
                        "name": name,
                        "subjects": list(subjects),
                        "max_age": max_age,
                        "max_count": max_count,
                        "max_bytes": max_bytes,
                        "messages": int(msgs),
                        "bytes": int(size),
                        "first_sequence": int(last_seq - msgs + 1),
                        "last_sequence": int(last_seq),
                        "durables": durables.get(name, []),
                    }
                )
            )
        return out

    async def delete_stream(self, name: str) -> None:
        db = await self.db()
        await db.execute("delete_stream", self.sql.delete_stream, validate_name(name, "stream"))

    async def delete_durable(self, stream: str, name: str) -> None:
        db = await self.db()
        await db.execute(
            "delete_durable",
            self.sql.delete_durable,
            validate_name(stream, "stream"),
            validate_name(name, "durable"),
        )
