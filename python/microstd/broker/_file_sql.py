"""The SQLite side of `file://`: the schema and one function per transaction.

Every process using the file shares these tables:

- `messages`: the log. Every publish is one row, numbered by `seq`
  (AUTOINCREMENT, so it only grows); `stream` names the stream that retains
  it, or is NULL for a message no stream retains, which is kept only
  `core_window` seconds for the core subscribers of other processes.
- `streams`: subjects (JSON), limits, and running `count` / `bytes`.
- `durables`: a durable's pattern, cursor (the next sequence to read) and
  dead-letter count; `pending`: its delivered, unsettled messages (`owner`
  is the member holding one, NULL while it waits; `deadline` is when its
  ack_wait runs out, or when a nacked one may go out again).
- `members`: live members of durables and queue groups, renewed by a
  heartbeat; `claims`: which queue group took which core message.
- `meta`: `streams_version`, bumped by every stream change, so each
  process knows when to reload the stream list; `members_version`, bumped
  when a member joins, leaves or expires, so each process sees a new
  member of a queue group within one poll.

Times are wall-clock seconds: deadlines are shared between processes.
Functions run on the engine's thread, each in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from microstd.broker._durable import StreamLimits, covers
from microstd.broker._subjects import matches
from microstd.errors import NotFound

__all__ = ["SCHEMA", "Row", "StreamRow"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT,
    topic TEXT NOT NULL,
    data BLOB NOT NULL,
    headers TEXT NOT NULL,
    content_type TEXT NOT NULL,
    time REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_stream ON messages (stream, seq);
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    subjects TEXT NOT NULL,
    max_age REAL,
    max_count INTEGER,
    max_bytes INTEGER,
    count INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS durables (
    stream TEXT NOT NULL,
    name TEXT NOT NULL,
    pattern TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, name)
);
CREATE TABLE IF NOT EXISTS pending (
    stream TEXT NOT NULL,
    durable TEXT NOT NULL,
    seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    owner TEXT,
    deadline REAL NOT NULL,
    avoid TEXT,
    PRIMARY KEY (stream, durable, seq)
);
CREATE INDEX IF NOT EXISTS pending_due ON pending (stream, durable, deadline);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (grp, member)
);
CREATE TABLE IF NOT EXISTS claims (
    seq INTEGER NOT NULL,
    grp TEXT NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (seq, grp)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('streams_version', 0);
INSERT OR IGNORE INTO meta (name, value) VALUES ('members_version', 0);
"""

#: A message row: (seq, stream, topic, data, headers JSON, content_type).
Row = tuple[int, "str | None", str, bytes, str, str]


class StreamRow:
    """A stream as the engine caches it (for matching publishes)."""

    __slots__ = ("limits", "name", "subjects")

    def __init__(self, name: str, subjects: list[str], limits: StreamLimits) -> None:
        self.name = name
        self.subjects = subjects
        self.limits = limits


class _Tx:
    """`with _Tx(db):` one IMMEDIATE transaction (the write lock from the start)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def streams_version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE name = 'streams_version'").fetchone()[0])


def load_streams(db: sqlite3.Connection) -> tuple[int, list[StreamRow]]:
    """The stream list and the version it is from."""
    version = streams_version(db)
    rows = db.execute("SELECT name, subjects, max_age, max_count, max_bytes FROM streams")
    return version, [
        StreamRow(name, json.loads(subjects), StreamLimits(age, count, size))
        for name, subjects, age, count, size in rows
    ]


def _bump(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET value = value + 1 WHERE name = 'streams_version'")


def add_stream(
    db: sqlite3.Connection, name: str, subjects: list[str], limits: StreamLimits, now: float
) -> bool:
    """Create or update a stream; True if created. Overlapping subjects: ValueError."""
    from microstd.broker._durable import refuse_overlap

    with _Tx(db):
        rows = db.execute("SELECT name, subjects FROM streams WHERE name != ?", (name,))
        refuse_overlap(name, subjects, ((other, json.loads(raw)) for other, raw in rows))
        created = db.execute("SELECT 1 FROM streams WHERE name = ?", (name,)).fetchone() is None
        db.execute(
            "INSERT INTO streams (name, subjects, max_age, max_count, max_bytes) VALUES (?,?,?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET subjects = excluded.subjects,"
            " max_age = excluded.max_age, max_count = excluded.max_count,"
            " max_bytes = excluded.max_bytes",
            (name, json.dumps(subjects), limits.max_age, limits.max_count, limits.max_bytes),
        )
        evict(db, name, now)
        _bump(db)
        return created


def delete_stream(db: sqlite3.Connection, name: str) -> None:
    with _Tx(db):
        db.execute("DELETE FROM streams WHERE name = ?", (name,))
        db.execute("DELETE FROM messages WHERE stream = ?", (name,))
        db.execute("DELETE FROM durables WHERE stream = ?", (name,))
        db.execute("DELETE FROM pending WHERE stream = ?", (name,))
        _bump(db)


def delete_durable(db: sqlite3.Connection, stream: str, name: str) -> None:
    with _Tx(db):
        db.execute("DELETE FROM durables WHERE stream = ? AND name = ?", (stream, name))
        db.execute("DELETE FROM pending WHERE stream = ? AND durable = ?", (stream, name))


def evict(db: sqlite3.Connection, stream: str, now: float) -> None:
    """Drop a stream's oldest messages past its limits (within a transaction)."""
    found = db.execute(
        "SELECT max_age, max_count, max_bytes, count, bytes FROM streams WHERE name = ?", (stream,)
    ).fetchone()
    if found is None:
        return
    max_age, max_count, max_bytes, count, size = found
    dropped = 0
    freed = 0

    def over() -> bool:
        left = count - dropped
        return left > 1 and (
            (max_count is not None and left > max_count)
            or (max_bytes is not None and size - freed > max_bytes)
        )

    while over() or max_age is not None:
        head = db.execute(
            "SELECT seq, time, size FROM messages WHERE stream = ? ORDER BY seq LIMIT 1", (stream,)
        ).fetchone()
        if head is None:
            break
        seq, when, head_size = head
        if not over() and (max_age is None or when >= now - max_age):
            break
        db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
        dropped += 1
        freed += head_size
    if dropped:
        db.execute(
            "UPDATE streams SET count = count - ?, bytes = bytes - ? WHERE name = ?",
            (dropped, freed, stream),
        )


def publish(
    db: sqlite3.Connection,
    items: Sequence[tuple[str | None, str, bytes, str, str, int]],
    now: float,
) -> None:
    """Append messages `(stream, topic, data, headers JSON, content_type, size)` in one commit."""
    with _Tx(db):
        touched: set[str] = set()
        for stream, topic, data, headers, content_type, size in items:
            db.execute(
                "INSERT INTO messages (stream, topic, data, headers, content_type, time, size)"
                " VALUES (?,?,?,?,?,?,?)",
                (stream, topic, data, headers, content_type, now, size),
            )
            if stream is not None:
                db.execute(
                    "UPDATE streams SET count = count + 1, bytes = bytes + ? WHERE name = ?",
                    (size, stream),
                )
                touched.add(stream)
        for stream in touched:
            evict(db, stream, now)


def read_after(db: sqlite3.Connection, seq: int, limit: int) -> list[Row]:
    """Messages after `seq`, oldest first (what core subscribers have not seen)."""
    return db.execute(
        "SELECT seq, stream, topic, data, headers, content_type FROM messages WHERE seq > ?"
        " ORDER BY seq LIMIT ?",
        (seq, limit),
    ).fetchall()


def last_seq(db: sqlite3.Connection) -> int:
    found = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    return int(found[0]) if found else 0


def trim(db: sqlite3.Connection, horizon: float) -> None:
    """Forget core-only messages, claims and members older than `horizon` / expired."""
    with _Tx(db):
        db.execute("DELETE FROM messages WHERE stream IS NULL AND time < ?", (horizon,))
        db.execute("DELETE FROM claims WHERE time < ?", (horizon,))


def members_version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT value FROM meta WHERE name = 'members_version'").fetchone()[0])


def _members_changed(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET value = value + 1 WHERE name = 'members_version'")


def heartbeat(
    db: sqlite3.Connection, alive: Iterable[tuple[str, str]], expires: float, now: float
) -> None:
    """Renew `(group, member)` pairs (adding new ones) and expire the others."""
    with _Tx(db):
        changed = False
        for group, member in alive:
            renewed = db.execute(
                "UPDATE members SET expires = ? WHERE grp = ? AND member = ?",
                (expires, group, member),
            )
            if not renewed.rowcount:
                db.execute(
                    "INSERT INTO members (grp, member, expires) VALUES (?,?,?)",
                    (group, member, expires),
                )
                changed = True
        if db.execute("DELETE FROM members WHERE expires < ?", (now,)).rowcount:
            changed = True
        if changed:
            _members_changed(db)


def views(db: sqlite3.Connection) -> tuple[int, dict[str, list[str]]]:
    """Every group's live members, sorted, and the version they are from."""
    version = members_version(db)
    found: dict[str, list[str]] = {}
    for group, member in db.execute("SELECT grp, member FROM members ORDER BY grp, member"):
        found.setdefault(group, []).append(member)
    return version, found


def leave(db: sqlite3.Connection, group: str, member: str) -> None:
    with _Tx(db):
        if db.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member)).rowcount:
            _members_changed(db)


def claim(db: sqlite3.Connection, wanted: Sequence[tuple[int, str]], now: float) -> list[bool]:
    """Claim core messages for queue groups `(seq, group)`: True where this one won."""
    with _Tx(db):
        won = []
        for seq, group in wanted:
            cur = db.execute(
                "INSERT OR IGNORE INTO claims (seq, grp, time) VALUES (?,?,?)", (seq, group, now)
            )
            won.append(cur.rowcount == 1)
        return won


# --- durables -------------------------------------------------------------------


def open_durable(
    db: sqlite3.Connection,
    stream: str,
    name: str,
    pattern: str,
    start: tuple[str, float, int],
) -> None:
    """Create durable `name` of `stream` at `start`, or check an existing one's pattern."""
    with _Tx(db):
        if db.execute("SELECT 1 FROM streams WHERE name = ?", (stream,)).fetchone() is None:
            raise NotFound(f"no stream {stream!r}")
        found = db.execute(
            "SELECT pattern FROM durables WHERE stream = ? AND name = ?", (stream, name)
        ).fetchone()
        if found is not None:
            if found[0] != pattern:
                raise ValueError(
                    f"durable {name!r} of stream {stream!r} filters {found[0]!r}, not {pattern!r}:"
                    " use another durable name, or delete it first"
                )
            return
        kind, when, seq = start
        if kind == "first":
            cursor = 0
        elif kind == "sequence":
            cursor = seq
        elif kind == "time":
            row = db.execute(
                "SELECT min(seq) FROM messages WHERE stream = ? AND time >= ?", (stream, when)
            ).fetchone()
            cursor = row[0] if row[0] is not None else last_seq(db) + 1
        else:
            cursor = last_seq(db) + 1
        db.execute(
            "INSERT INTO durables (stream, name, pattern, cursor) VALUES (?,?,?,?)",
            (stream, name, pattern, cursor),
        )


def covering(streams: list[StreamRow], pattern: str) -> StreamRow | None:
    for stream in streams:
        if any(covers(s, pattern) for s in stream.subjects):
            return stream
    return None


def has_work(db: sqlite3.Connection, stream: str, name: str, now: float) -> bool:
    """Anything for the durable: a message past its cursor, or a pending one due. Read only."""
    row = db.execute(
        "SELECT 1 FROM pending WHERE stream = ? AND durable = ? AND deadline <= ? LIMIT 1",
        (stream, name, now),
    ).fetchone()
    if row is not None:
        return True
    row = db.execute(
        "SELECT 1 FROM durables d JOIN messages m ON m.stream = d.stream AND m.seq >= d.cursor"
        " WHERE d.stream = ? AND d.name = ? LIMIT 1",
        (stream, name),
    ).fetchone()
    return row is not None


def fetch(
    db: sqlite3.Connection,
    stream: str,
    name: str,
    pattern: str,
    takers: Sequence[tuple[str, int]],
    others_alive: bool,
    ack_wait: float,
    now: float,
) -> list[tuple[str, Row, int]]:
    """Hand out up to each taker's room: `(member, row, delivery count)`.

    `takers` are this process's members with room, `(member id, room)`.
    Expired deliveries become ready first; ready ones go before new ones. A
    ready message whose ack_wait ran out on one of our members goes to
    another of ours, or is left for another process's member if one is alive.
    """
    out: list[tuple[str, Row, int]] = []
    room = dict(takers)
    order = [m for m, _ in takers]
    turn = 0

    def pick(avoid: str | None) -> str | None:
        nonlocal turn
        fallback = None
        for k in range(len(order)):
            member = order[(turn + k) % len(order)]
            if room[member] <= 0:
                continue
            if member == avoid:
                fallback = member
                continue
            turn = (turn + k + 1) % len(order)
            return member
        return None if others_alive else fallback

    with _Tx(db):
        if (
            db.execute(
                "SELECT 1 FROM durables WHERE stream = ? AND name = ?", (stream, name)
            ).fetchone()
            is None
        ):
            return []
        evict(db, stream, now)
        db.execute(
            "UPDATE pending SET avoid = owner, owner = NULL, deadline = 0"
            " WHERE stream = ? AND durable = ? AND owner IS NOT NULL AND deadline <= ?",
            (stream, name, now),
        )
        wanted = sum(room.values())
        ready = db.execute(
            "SELECT p.seq, p.count, p.avoid, m.stream, m.topic, m.data, m.headers, m.content_type"
            " FROM pending p LEFT JOIN messages m ON m.seq = p.seq"
            " WHERE p.stream = ? AND p.durable = ? AND p.owner IS NULL AND p.deadline <= ?"
            " ORDER BY p.seq LIMIT ?",
            (stream, name, now, wanted),
        ).fetchall()
        for seq, count, avoid, m_stream, topic, data, headers, content_type in ready:
            if topic is None:  # evicted meanwhile
                db.execute(
                    "DELETE FROM pending WHERE stream = ? AND durable = ? AND seq = ?",
                    (stream, name, seq),
                )
                continue
            member = pick(avoid)
            if member is None:
                continue
            room[member] -= 1
            db.execute(
                "UPDATE pending SET owner = ?, count = count + 1, deadline = ?, avoid = NULL"
                " WHERE stream = ? AND durable = ? AND seq = ?",
                (member, now + ack_wait, stream, name, seq),
            )
            out.append((member, (seq, m_stream, topic, data, headers, content_type), count + 1))
        wanted = sum(room.values())
        if wanted > 0:
            cursor = db.execute(
                "SELECT cursor FROM durables WHERE stream = ? AND name = ?", (stream, name)
            ).fetchone()[0]
            match_all = _only_subject(db, stream) == pattern
            rows = db.execute(
                "SELECT seq, stream, topic, data, headers, content_type FROM messages"
                " WHERE stream = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (stream, cursor, max(wanted, 64)),
            ).fetchall()
            for row in rows:
                if wanted <= 0:
                    break
                cursor = row[0] + 1
                if not match_all and not matches(pattern, row[2]):
                    continue
                member = pick(None)
                if member is None:
                    cursor = row[0]
                    break
                room[member] -= 1
                wanted -= 1
                db.execute(
                    "INSERT OR REPLACE INTO pending (stream, durable, seq, count, owner, deadline)"
                    " VALUES (?,?,?,1,?,?)",
                    (stream, name, row[0], member, now + ack_wait),
                )
                out.append((member, row, 1))
            db.execute(
                "UPDATE durables SET cursor = ? WHERE stream = ? AND name = ?",
                (cursor, stream, name),
            )
    return out


def _only_subject(db: sqlite3.Connection, stream: str) -> str | None:
    row = db.execute("SELECT subjects FROM streams WHERE name = ?", (stream,)).fetchone()
    subjects = json.loads(row[0]) if row else []
    return subjects[0] if len(subjects) == 1 else None


#: A settle: (stream, durable, seq, count, how, delay, dead, member).
Settle = tuple[str, str, int, int, str, float, bool, str]


def settle(db: sqlite3.Connection, ops: Sequence[Settle], now: float) -> None:
    """Apply acks, nacks, terms, releases and progress reports in one commit."""
    with _Tx(db):
        for stream, name, seq, count, how, delay, dead, member in ops:
            key = (stream, name, seq)
            if how == "ack":
                db.execute("DELETE FROM pending WHERE stream = ? AND durable = ? AND seq = ?", key)
            elif how == "term":
                cur = db.execute(
                    "DELETE FROM pending WHERE stream = ? AND durable = ? AND seq = ?"
                    " AND count = ?",
                    (*key, count),
                )
                if dead and cur.rowcount:
                    db.execute(
                        "UPDATE durables SET dead_lettered = dead_lettered + 1"
                        " WHERE stream = ? AND name = ?",
                        (stream, name),
                    )
            elif how in ("nack", "release"):
                db.execute(
                    "UPDATE pending SET owner = NULL, deadline = ?, avoid = NULL,"
                    " count = count - ? WHERE stream = ? AND durable = ? AND seq = ?"
                    " AND count = ? AND owner = ?",
                    (
                        now + delay if delay > 0 else 0.0,
                        1 if how == "release" else 0,
                        *key,
                        count,
                        member,
                    ),
                )
            elif how == "progress":
                db.execute(
                    "UPDATE pending SET deadline = ? WHERE stream = ? AND durable = ? AND seq = ?"
                    " AND count = ? AND owner = ?",
                    (now + delay, *key, count, member),
                )


def release_member(db: sqlite3.Connection, stream: str, name: str, member: str) -> None:
    """Everything `member` still holds goes out again at once (it left)."""
    with _Tx(db):
        db.execute(
            "UPDATE pending SET owner = NULL, deadline = 0 WHERE stream = ? AND durable = ?"
            " AND owner = ?",
            (stream, name, member),
        )


def info(db: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    """Every stream and its durables, as `PythonStreams.info` reports them."""
    out = []
    names = [r[0] for r in db.execute("SELECT name FROM streams ORDER BY name")]
    for stream in names:
        with _Tx(db):
            evict(db, stream, now)
        row = db.execute(
            "SELECT subjects, max_age, max_count, max_bytes, count, bytes FROM streams"
            " WHERE name = ?",
            (stream,),
        ).fetchone()
        subjects, max_age, max_count, max_bytes, count, size = row
        first, last = db.execute(
            "SELECT min(seq), max(seq) FROM messages WHERE stream = ?", (stream,)
        ).fetchone()
        only = json.loads(subjects)
        durables = []
        for name, pattern, cursor, dead in db.execute(
            "SELECT name, pattern, cursor, dead_lettered FROM durables WHERE stream = ?"
            " ORDER BY name",
            (stream,),
        ).fetchall():
            topics = db.execute(
                "SELECT topic FROM messages WHERE stream = ? AND seq >= ?", (stream, cursor)
            ).fetchall()
            waiting = sum(
                1
                for (t,) in topics
                if (len(only) == 1 and only[0] == pattern) or matches(pattern, t)
            )
            unacked, redelivered = db.execute(
                "SELECT count(*), sum(count > 1) FROM pending WHERE stream = ? AND durable = ?",
                (stream, name),
            ).fetchone()
            durables.append(
                {
                    "name": name,
                    "pattern": pattern,
                    "pending": waiting,
                    "unacked": unacked,
                    "redelivered": redelivered or 0,
                    "dead_lettered": dead,
                    "consumers": db.execute(
                        "SELECT count(*) FROM members WHERE grp = ? AND expires >= ?",
                        (f"d:{stream}/{name}", now),
                    ).fetchone()[0],
                }
            )
        out.append(
            {
                "name": stream,
                "subjects": only,
                "max_age": max_age,
                "max_count": max_count,
                "max_bytes": max_bytes,
                "messages": count,
                "bytes": size,
                "first_sequence": first if first is not None else last_seq(db) + 1,
                "last_sequence": last if last is not None else last_seq(db),
                "durables": durables,
            }
        )
    return out
