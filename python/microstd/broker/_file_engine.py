"""The `file://` engine: one SQLite connection and one thread per database file per process.

Every `FileBroker` of this process on the same file shares the engine. Its
thread runs everything that touches the database: tasks handed to it
(publishes, batched into one transaction; settles, batched likewise; stream
and durable changes), and, every `poll_interval` or when woken, a poll:

- core: read the log past the last row seen and hand each message to the
  matching subscriptions of this process. A queue group's message is
  claimed in the `claims` table first (exactly once across processes); the
  group member it hashes to claims at once, the others after
  `group_fallback` seconds (see `_groups.preferred_member`).
- durables: for each durable with members here that have room, expire what
  is due and fetch what is ready, round robin between those members.
- every `heartbeat` seconds: renew this process's members and read who is
  alive; forget core messages older than `core_window`.

Deliveries are pushed into the subscribers' queues from this thread (the
queues accept pushes from any thread).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from microstd._sqlite import open_wal
from microstd.broker import _file_sql as sql
from microstd.broker._durable_delivery import DurableMessage
from microstd.broker._groups import preferred_member
from microstd.broker._subjects import matches
from microstd.broker.base import Message
from microstd.errors import Closed, ConnectionFailed

__all__ = ["CoreSub", "DurableMember", "FileDurableMessage", "FileEngine", "acquire", "release"]

log = logging.getLogger("microstd.broker")

#: Log rows read per query.
_BATCH = 1000


class CoreSub:
    """A core subscription of this process."""

    __slots__ = ("group", "member", "pattern", "push", "queue")

    def __init__(self, pattern: str, queue: str | None, push: Callable[[Any], object]) -> None:
        self.pattern = pattern
        self.queue = queue
        self.push = push
        self.group = f"q:{queue}@{pattern}" if queue is not None else None
        self.member = ""


class _Group:
    __slots__ = ("local", "turn", "view")

    def __init__(self) -> None:
        self.local: dict[str, CoreSub] = {}
        self.view: list[str] = []
        self.turn = 0

    def next_local(self) -> CoreSub | None:
        if not self.local:
            return None
        members = list(self.local.values())
        self.turn += 1
        return members[self.turn % len(members)]


class DurableMember:
    """A subscriber of a durable in this process."""

    __slots__ = ("capacity", "inflight", "mid", "paused", "push", "settler")

    def __init__(self, push: Callable[[Any], object], capacity: int, settler: Any) -> None:
        self.mid = ""
        self.push = push
        self.capacity = capacity
        self.settler = settler
        self.inflight = 0
        self.paused = False


class _Durable:
    __slots__ = ("ack_wait", "members", "name", "pattern", "stream", "turn", "view")

    def __init__(self, stream: str, name: str, pattern: str, ack_wait: float) -> None:
        self.stream = stream
        self.name = name
        self.pattern = pattern
        self.ack_wait = ack_wait
        self.members: dict[str, DurableMember] = {}
        self.view: list[str] = []
        self.turn = 0  # whose turn it is first, so members take turns across fetches

    @property
    def group(self) -> str:
        return f"d:{self.stream}/{self.name}"


class FileDurableMessage(DurableMessage):
    """A delivery of a durable subscription on `file://`."""

    __slots__ = ("_engine", "_key")

    def __init__(
        self,
        row: sql.Row,
        count: int,
        engine: FileEngine,
        durable: _Durable,
        member: DurableMember,
    ) -> None:
        seq, stream, topic, data, headers, content_type = row
        msgid = f"{stream}:{seq}"
        headers = json.loads(headers)
        super().__init__(topic, data, headers, content_type, msgid, count, member.settler)
        self._engine = engine
        self._key = (durable, member, seq)

    def _send(self, how: str, delay: float, dead: bool) -> None:
        durable, member, seq = self._key
        self._engine.settle(durable, member, seq, self._count, how, delay, dead)

    def _progress(self) -> None:
        durable, member, seq = self._key
        self._engine.settle(durable, member, seq, self._count, "progress", durable.ack_wait)


class FileEngine:
    """The thread that owns one database file's connection in this process."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        timeout: float,
        poll_interval: float,
        core_window: float,
        heartbeat: float,
        group_fallback: float,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._timeout = timeout
        self.poll_interval = poll_interval
        self._core_window = core_window
        self._heartbeat = heartbeat
        self._fallback = group_fallback
        self.refs = 0
        self.uid = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._tasks: list[tuple[str, Any, Future[Any] | None]] = []
        self._woken = False
        self._running = True
        self._db: sqlite3.Connection | None = None
        self._streams_version = -1
        self._streams: list[sql.StreamRow] = []
        self._core: list[CoreSub] = []
        self._groups: dict[str, _Group] = {}
        self._cursor = 0
        self._deferred: list[tuple[float, int, str, Message]] = []
        self._durables: dict[tuple[str, str], _Durable] = {}
        self._next_beat = 0.0
        self._members_version = -1
        self._started = Future[None]()
        self._thread = threading.Thread(target=self._main, name="microstd-file-broker", daemon=True)
        self._thread.start()
        self._started.result()

    # --- the thread -------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._db = self._connect()
            self._cursor = sql.last_seq(self._db)
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        while True:
            with self._cond:
                if not self._tasks and not self._woken and self._running:
                    self._cond.wait(self.poll_interval)
                tasks, self._tasks = self._tasks, []
                self._woken = False
                running = self._running
            self._run(tasks)
            if not running:
                break
            try:
                self._poll()
            except sqlite3.Error as exc:
                log.warning("file:// broker %s: poll failed, retrying: %s", self.path, exc)
        self._db.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            db = open_wal(
                path, timeout=self._timeout, synchronous=self._synchronous, schema=sql.SCHEMA
            )
        except (sqlite3.Error, OSError) as exc:
            raise ConnectionFailed(f"cannot open SQLite broker {self.path!r}: {exc}") from exc
        return db

    def _run(self, tasks: list[tuple[str, Any, Future[Any] | None]]) -> None:
        db = self._db
        assert db is not None
        publishes = [t for t in tasks if t[0] == "publish"]
        settles = [t[1] for t in tasks if t[0] == "settle"]
        if publishes:
            self._publish(db, publishes)
        if settles:
            self._settle(db, settles)
        for kind, payload, future in tasks:
            if kind != "call" or future is None or not future.set_running_or_notify_cancel():
                continue
            fn, args = payload
            try:
                future.set_result(fn(db, *args))
            except BaseException as exc:
                future.set_exception(_mapped(exc))

    def _publish(
        self, db: sqlite3.Connection, tasks: list[tuple[str, Any, Future[Any] | None]]
    ) -> None:
        now = time.time()
        try:
            self._reload_streams(db)
            items = []
            for _, (topic, data, headers, content_type, size), _ in tasks:
                stream = next(
                    (s.name for s in self._streams if any(matches(p, topic) for p in s.subjects)),
                    None,
                )
                items.append((stream, topic, data, json.dumps(headers), content_type, size))
            sql.publish(db, items, now)
        except BaseException as exc:
            for _, _, future in tasks:
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_exception(_mapped(exc))
            return
        for _, _, future in tasks:
            if future is not None and future.set_running_or_notify_cancel():
                future.set_result(None)

    def _reload_streams(self, db: sqlite3.Connection) -> None:
        # Another process may have changed the streams: a cheap check per batch.
        if sql.streams_version(db) != self._streams_version:
            self._streams_version, self._streams = sql.load_streams(db)

    def _settle(self, db: sqlite3.Connection, ops: list[tuple[Any, ...]]) -> None:
        rows: list[sql.Settle] = []
        for durable, member, seq, count, how, delay, dead in ops:
            rows.append((durable.stream, durable.name, seq, count, how, delay, dead, member.mid))
            if how != "progress":
                member.inflight -= 1
        try:
            sql.settle(db, rows, time.time())
        except sqlite3.Error as exc:
            # Unsettled, so delivered again after ack_wait: at least once still holds.
            log.warning(
                "file:// broker %s: settling %d message(s) failed: %s", self.path, len(rows), exc
            )

    def _poll(self) -> None:
        db = self._db
        assert db is not None
        now = time.time()
        if now >= self._next_beat:
            self._beat(db, now)
        if (self._groups or self._durables) and sql.members_version(db) != self._members_version:
            self._read_views(db)
        if self._core or self._deferred:
            self._poll_core(db, now)
        if self._durables:
            self._poll_durables(db, now)

    def _beat(self, db: sqlite3.Connection, now: float) -> None:
        self._next_beat = now + self._heartbeat
        alive = [(d.group, m) for d in self._durables.values() for m in d.members]
        alive += [(name, m) for name, g in self._groups.items() for m in g.local]
        sql.heartbeat(db, alive, now + 3 * self._heartbeat, now)
        self._read_views(db)
        sql.trim(db, now - self._core_window)

    def _read_views(self, db: sqlite3.Connection) -> None:
        self._members_version, views = sql.views(db)
        for name, group in self._groups.items():
            group.view = views.get(name, [])
        for durable in self._durables.values():
            durable.view = views.get(durable.group, [])

    def _poll_core(self, db: sqlite3.Connection, now: float) -> None:
        wanted: list[tuple[int, str, Message, CoreSub | None]] = []
        while self._deferred and self._deferred[0][0] <= now:
            _, seq, deferred_group, message = heapq.heappop(self._deferred)
            wanted.append((seq, deferred_group, message, None))
        while True:
            rows = sql.read_after(db, self._cursor, _BATCH)
            for seq, _stream, topic, data, headers, content_type in rows:
                self._cursor = seq
                message = Message(topic, data, json.loads(headers), content_type)
                claimed: set[str] = set()
                for sub in self._core:
                    if not matches(sub.pattern, topic):
                        continue
                    if sub.group is None:
                        sub.push(message)
                    elif sub.group not in claimed:
                        claimed.add(sub.group)
                        self._route(seq, sub.group, message, now, wanted)
            if len(rows) < _BATCH:
                break
        if wanted:
            won = sql.claim(db, [(seq, group) for seq, group, _, _ in wanted], now)
            for (_, group_name, message, chosen), ok in zip(wanted, won, strict=True):
                group = self._groups.get(group_name)
                if not ok or group is None:
                    continue
                target = chosen if chosen is not None and chosen.member in group.local else None
                target = target or group.next_local()
                if target is not None:
                    target.push(message)

    def _route(
        self,
        seq: int,
        group_name: str,
        message: Message,
        now: float,
        wanted: list[tuple[int, str, Message, CoreSub | None]],
    ) -> None:
        group = self._groups[group_name]
        if group.view:
            preferred = preferred_member(str(seq), group.view)
            chosen = group.local.get(preferred)
            if chosen is None:
                # Another process's turn: claim only if it has not after a while.
                heapq.heappush(self._deferred, (now + self._fallback, seq, group_name, message))
                return
            wanted.append((seq, group_name, message, chosen))
        else:
            wanted.append((seq, group_name, message, group.next_local()))

    def _poll_durables(self, db: sqlite3.Connection, now: float) -> None:
        for durable in list(self._durables.values()):
            takers = [
                (m.mid, m.capacity - m.inflight)
                for m in durable.members.values()
                if not m.paused and m.inflight < m.capacity
            ]
            if not takers or not sql.has_work(db, durable.stream, durable.name, now):
                continue
            first = durable.turn % len(takers)
            takers = takers[first:] + takers[:first]
            others = any(m not in durable.members for m in durable.view)
            got = sql.fetch(
                db,
                durable.stream,
                durable.name,
                durable.pattern,
                takers,
                others,
                durable.ack_wait,
                now,
            )
            durable.turn += len(got)
            for mid, row, count in got:
                member = durable.members[mid]
                member.inflight += 1
                member.push(FileDurableMessage(row, count, self, durable, member))

    # --- handing work to the thread -------------------------------------------------

    def _submit(self, kind: str, payload: Any, future: Future[Any] | None) -> None:
        with self._cond:
            if not self._running:
                raise Closed("the file:// broker is closed")
            self._tasks.append((kind, payload, future))
            self._cond.notify()

    def call(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `fn(db, *args)` on the thread; its result or exception in the future."""
        future: Future[Any] = Future()
        self._submit("call", (fn, args), future)
        return future

    def local(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run `fn(self, db, *args)` on the thread (changes to this engine's state)."""
        return self.call(lambda db, *a: fn(self, db, *a), *args)

    def publish(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str, size: int
    ) -> Future[None]:
        future: Future[None] = Future()
        self._submit("publish", (topic, data, headers, content_type, size), future)
        return future

    def settle(
        self,
        durable: _Durable,
        member: DurableMember,
        seq: int,
        count: int,
        how: str,
        delay: float = 0.0,
        dead: bool = False,
    ) -> None:
        """Queue a settle (applied with the others in one transaction); never waits."""
        # Closed: the message is delivered again after its ack_wait.
        with contextlib.suppress(Closed):
            self._submit("settle", (durable, member, seq, count, how, delay, dead), None)

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(30)

    # --- state changes (run on the thread, through `local`) ---------------------------

    def add_core(self, db: sqlite3.Connection, sub: CoreSub) -> None:
        # Hand out what arrived before it, so it sees only what comes after.
        self._poll_core(db, time.time())
        if sub.group is not None:
            sub.member = f"{self.uid}.{next(self._ids)}"
            group = self._groups.setdefault(sub.group, _Group())
            group.local[sub.member] = sub
            self._beat(db, time.time())  # announce it at once
        self._core.append(sub)

    def remove_core(self, db: sqlite3.Connection, sub: CoreSub) -> None:
        # Whatever committed before the unsubscribe is handed to it first (drain).
        self._poll_core(db, time.time())
        if sub in self._core:
            self._core.remove(sub)
        if sub.group is not None:
            group = self._groups.get(sub.group)
            if group is not None:
                group.local.pop(sub.member, None)
                if not group.local:
                    del self._groups[sub.group]
            sql.leave(db, sub.group, sub.member)

    def add_member(
        self,
        db: sqlite3.Connection,
        stream: str,
        name: str,
        pattern: str,
        ack_wait: float,
        member: DurableMember,
    ) -> None:
        durable = self._durables.get((stream, name))
        if durable is None:
            durable = self._durables[(stream, name)] = _Durable(stream, name, pattern, ack_wait)
        durable.ack_wait = ack_wait
        member.mid = f"{self.uid}.{next(self._ids)}"
        durable.members[member.mid] = member
        self._beat(db, time.time())
        self._poll_durables(db, time.time())

    def pause_member(self, db: sqlite3.Connection, member: DurableMember) -> None:
        del db
        member.paused = True

    def remove_member(
        self, db: sqlite3.Connection, stream: str, name: str, member: DurableMember
    ) -> None:
        durable = self._durables.get((stream, name))
        if durable is None:
            return
        durable.members.pop(member.mid, None)
        sql.release_member(db, stream, name, member.mid)
        sql.leave(db, durable.group, member.mid)
        if not durable.members:
            del self._durables[(stream, name)]

    def stream_list(self, db: sqlite3.Connection) -> list[sql.StreamRow]:
        self._reload_streams(db)
        return list(self._streams)


def _mapped(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return ConnectionFailed(f"SQLite broker: {exc}")
    return exc


_engines: dict[str, FileEngine] = {}
_lock = threading.Lock()


def acquire(path: str, **options: Any) -> FileEngine:
    """The engine of `path` in this process, started if needed (blocks while it opens)."""
    key = os.path.abspath(path)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = FileEngine(key, **options)
        engine.refs += 1
        return engine


def release(engine: FileEngine) -> None:
    """Drop one reference; the last one stops the engine."""
    with _lock:
        engine.refs -= 1
        if engine.refs > 0:
            return
        _engines.pop(engine.path, None)
    engine.stop()
