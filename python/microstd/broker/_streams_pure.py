"""`PythonStreams`: the pure twin of the Rust durable-stream core `RustStreams`.

The same algorithm and the same interface:

- A stream keeps the messages published on its subjects, numbered by a
  sequence, and evicts the oldest past its limits (count, bytes, age; the
  newest message is kept whatever its size).
- A durable consumer reads one stream through a filter pattern, from a
  cursor. A message it hands out is pending until it is acked or
  terminated: a nack puts it back (at once or after a delay), and so does
  `ack_wait` passing without an ack or `in_progress()`.
- Consumers push deliveries to their members (the live subscribers of
  that durable) round robin, each up to its capacity of unsettled
  messages; redeliveries go before new messages. Timers are driven by the
  members: `tick(cid)` expires what is due and says when to come back.

Every operation takes the lock; deliveries are handed to member targets
after it is released, so a target may call back into the core.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from microstd.broker._durable import covers, refuse_overlap
from microstd.broker._subjects import Trie, matches, validate_pattern
from microstd.broker.base import Message
from microstd.errors import NotFound

__all__ = ["PythonDurableMessage", "PythonStreams", "message_size"]

#: Distinct topics whose filter result a consumer remembers; then it starts over.
MATCH_CACHE_MAX = 8192


def message_size(message: Any) -> int:
    """What a message counts for against `max_bytes`: topic, body and headers, in bytes."""
    size = len(message.topic.encode()) + len(message.data)
    for key, value in message.headers.items():
        size += len(key.encode()) + len(value.encode())
    return size


class _Entry:
    __slots__ = ("message", "size", "time")

    def __init__(self, message: Any, size: int, when: float) -> None:
        self.message = message
        self.size = size
        self.time = when


class _Stream:
    __slots__ = (
        "bytes",
        "consumers",
        "entries",
        "first",
        "last",
        "max_age",
        "max_bytes",
        "max_count",
        "name",
        "sid",
        "subjects",
    )

    def __init__(self, sid: int, name: str, subjects: list[str]) -> None:
        self.sid = sid
        self.name = name
        self.subjects = subjects
        self.max_age: float | None = None
        self.max_count: int | None = None
        self.max_bytes: int | None = None
        self.entries: dict[int, _Entry] = {}
        self.first = 1  # the oldest sequence held (== last + 1 when empty)
        self.last = 0  # the last sequence assigned
        self.bytes = 0
        self.consumers: dict[str, _Consumer] = {}

    def evict(self, wall: float) -> None:
        """Drop the oldest messages past the limits; the newest survives count and bytes."""
        entries = self.entries
        while len(entries) > 1 and (
            (self.max_count is not None and len(entries) > self.max_count)
            or (self.max_bytes is not None and self.bytes > self.max_bytes)
        ):
            self._drop_first()
        if self.max_age is not None:
            horizon = wall - self.max_age
            while entries and entries[self.first].time < horizon:
                self._drop_first()

    def _drop_first(self) -> None:
        entry = self.entries.pop(self.first)
        self.bytes -= entry.size
        self.first += 1


class _Pending:
    __slots__ = ("avoid", "count", "deadline", "member")

    def __init__(self) -> None:
        self.count = 0  # deliveries so far
        self.member: _Member | None = None  # who holds it now; None while waiting
        self.deadline = 0.0  # when it comes back (ack_wait, or a nack's delay)
        # A member whose ack_wait ran out on it: another one gets it if it can.
        self.avoid: _Member | None = None


class _Member:
    __slots__ = ("active", "capacity", "consumer", "inflight", "mid", "settler", "target")

    def __init__(
        self,
        mid: int,
        consumer: _Consumer,
        target: Callable[[Any], object],
        capacity: int,
        settler: object,
    ) -> None:
        self.mid = mid
        self.consumer = consumer
        self.target = target
        self.capacity = capacity
        self.settler = settler  # what its messages' nack() and term() go through
        self.inflight = 0
        self.active = True


class _Consumer:
    __slots__ = (
        "ack_wait",
        "cache",
        "cid",
        "cursor",
        "dead_lettered",
        "match_all",
        "members",
        "name",
        "pattern",
        "pending",
        "ready",
        "rr",
        "stream",
        "timers",
    )

    def __init__(
        self, cid: int, stream: _Stream, name: str, pattern: str, ack_wait: float, cursor: int
    ) -> None:
        self.cid = cid
        self.stream = stream
        self.name = name
        self.pattern = pattern
        # A filter equal to the stream's only subject passes everything: skip it.
        self.match_all = stream.subjects == [pattern]
        self.cache: dict[str, bool] = {}
        self.ack_wait = ack_wait
        self.cursor = cursor
        self.pending: dict[int, _Pending] = {}
        self.ready: deque[int] = deque()  # pending sequences due for redelivery
        self.timers: list[tuple[float, int]] = []  # (deadline, sequence), lazily pruned
        self.members: list[_Member] = []
        self.rr = 0
        self.dead_lettered = 0

    def wants(self, topic: str) -> bool:
        if self.match_all:
            return True
        hit = self.cache.get(topic)
        if hit is None:
            if len(self.cache) >= MATCH_CACHE_MAX:
                self.cache.clear()
            hit = self.cache[topic] = matches(self.pattern, topic)
        return hit

    def free_member(self, avoid: _Member | None) -> _Member | None:
        """The next member (round robin) with room, other than `avoid` if another has room."""
        members = self.members
        n = len(members)
        fallback = None
        for i in range(n):
            member = members[(self.rr + i) % n]
            if member.inflight >= member.capacity:
                continue
            if member is avoid:
                if fallback is None:
                    fallback = member
                continue
            self.rr = (self.rr + i + 1) % n
            return member
        return fallback


class PythonDurableMessage(Message):
    """A message of a durable subscription of the pure core (the twin of `RustDurableMessage`).

    `ack()` settles it in the core; `nack()`, `term()` and `in_progress()` go
    through the subscription's settler, which applies backoff and dead letters.
    """

    __slots__ = ("_core", "_count", "_id", "_key", "settled", "settler")

    def __init__(
        self,
        message: Any,
        msgid: str,
        count: int,
        core: PythonStreams,
        key: tuple[int, int],
    ) -> None:
        super().__init__(message.topic, message.data, message.headers, message.content_type)
        self._id = msgid
        self._count = count
        self._core = core
        self._key = key  # (consumer id, sequence)
        self.settled = False
        self.settler: Any = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def delivery_count(self) -> int:
        return self._count

    def ack(self) -> None:
        if not self.settled:
            self.settled = True
            cid, seq = self._key
            self._core.ack(cid, seq, self._count)

    def nack(self, delay: float | None = None) -> None:
        if not self.settled:
            self.settler.nack(self, delay, "nacked")

    def term(self) -> None:
        if not self.settled:
            self.settler.term(self, "terminated")

    def in_progress(self) -> None:
        if not self.settled:
            cid, seq = self._key
            self._core.progress(cid, seq, self._count)

    def settle(self, how: str, delay: float = 0.0, dead: bool = False) -> None:
        """The core operations behind nack / term / release, for the settler."""
        if self.settled:
            return
        self.settled = True
        cid, seq = self._key
        if how == "nack":
            self._core.nack(cid, seq, self._count, delay)
        elif how == "release":
            self._core.release(cid, seq, self._count)
        else:
            self._core.term(cid, seq, self._count, dead)


class PythonStreams:
    """Streams and durable consumers: the same interface as `RustStreams`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._trie = Trie()
        self._by_sid: dict[int, _Stream] = {}
        self._consumers: dict[int, _Consumer] = {}
        self._members: dict[int, _Member] = {}
        self._ids = itertools.count(1)
        #: True once a stream exists: `send` checks it before anything else.
        self.active = False

    # --- streams --------------------------------------------------------------

    def add_stream(
        self,
        name: str,
        subjects: list[str],
        max_age: float | None,
        max_count: int | None,
        max_bytes: int | None,
    ) -> bool:
        """Create or update stream `name`; True if it was created. Subjects are valid patterns."""
        with self._lock:
            refuse_overlap(name, subjects, ((s.name, s.subjects) for s in self._streams.values()))
            stream = self._streams.get(name)
            created = stream is None
            if stream is None:
                stream = _Stream(next(self._ids), name, list(subjects))
                self._streams[name] = stream
                self._by_sid[stream.sid] = stream
            else:
                for subject in stream.subjects:
                    self._trie.remove(validate_pattern(subject), stream.sid)
                stream.subjects = list(subjects)
                for consumer in stream.consumers.values():
                    consumer.match_all = stream.subjects == [consumer.pattern]
            for subject in stream.subjects:
                self._trie.insert(validate_pattern(subject), stream.sid)
            stream.max_age, stream.max_count, stream.max_bytes = max_age, max_count, max_bytes
            stream.evict(time.time())
            self.active = True
            return created

    def delete_stream(self, name: str) -> bool:
        with self._lock:
            stream = self._streams.pop(name, None)
            if stream is None:
                return False
            for subject in stream.subjects:
                self._trie.remove(validate_pattern(subject), stream.sid)
            del self._by_sid[stream.sid]
            for consumer in list(stream.consumers.values()):
                self._drop_consumer(consumer)
            self.active = bool(self._streams)
            return True

    def stream_for(self, pattern: str) -> str | None:
        """The stream whose subjects cover `pattern`, or None."""
        with self._lock:
            for stream in self._streams.values():
                if any(covers(s, pattern) for s in stream.subjects):
                    return stream.name
            return None

    # --- publishing --------------------------------------------------------------

    def store(self, message: Any) -> int:
        """Keep `message` in every stream its topic matches and hand it out; how many streams."""
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            topic = message.topic
            found = self._trie.find(topic.split("."))
            if not found:
                return 0
            wall = time.time()
            now = time.monotonic()
            size = message_size(message)
            for sid in found:
                stream = self._by_sid[sid]
                stream.last += 1
                stream.entries[stream.last] = _Entry(message, size, wall)
                stream.bytes += size
                stream.evict(wall)
                for consumer in stream.consumers.values():
                    if consumer.members and consumer.wants(topic):
                        self._pump(consumer, now, wall, out)
        for target, delivery in out:
            target(delivery)
        return len(found)

    # --- consumers -----------------------------------------------------------------

    def consumer(
        self,
        stream_name: str,
        name: str,
        pattern: str,
        ack_wait: float,
        start: str,
        start_time: float,
        start_seq: int,
    ) -> int:
        """The id of durable `name` on the stream, created (from `start`) if new.

        An existing durable keeps its position; its `ack_wait` is updated. A
        different filter pattern is a ValueError.
        """
        with self._lock:
            stream = self._streams.get(stream_name)
            if stream is None:
                raise NotFound(f"no stream {stream_name!r}")
            existing = stream.consumers.get(name)
            if existing is not None:
                if existing.pattern != pattern:
                    raise ValueError(
                        f"durable {name!r} of stream {stream_name!r} filters {existing.pattern!r},"
                        f" not {pattern!r}: use another durable name, or delete it first"
                    )
                existing.ack_wait = ack_wait
                return existing.cid
            if start == "first":
                cursor = stream.first
            elif start == "sequence":
                cursor = max(start_seq, stream.first)
            elif start == "time":
                cursor = stream.last + 1
                for seq in range(stream.first, stream.last + 1):
                    if stream.entries[seq].time >= start_time:
                        cursor = seq
                        break
            else:
                cursor = stream.last + 1
            consumer = _Consumer(next(self._ids), stream, name, pattern, ack_wait, cursor)
            stream.consumers[name] = consumer
            self._consumers[consumer.cid] = consumer
            return consumer.cid

    def delete_consumer(self, stream_name: str, name: str) -> bool:
        with self._lock:
            stream = self._streams.get(stream_name)
            consumer = stream.consumers.get(name) if stream is not None else None
            if consumer is None:
                return False
            self._drop_consumer(consumer)
            return True

    def _drop_consumer(self, consumer: _Consumer) -> None:
        consumer.stream.consumers.pop(consumer.name, None)
        self._consumers.pop(consumer.cid, None)
        for member in consumer.members:
            member.active = False
            self._members.pop(member.mid, None)
        consumer.members = []
        consumer.pending.clear()

    def attach(
        self, cid: int, target: Callable[[Any], object], capacity: int, settler: object
    ) -> int:
        """Add a member to consumer `cid`: it gets deliveries through `target(message)`,
        at most `capacity` unsettled at a time."""
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            consumer = self._consumer(cid)
            member = _Member(next(self._ids), consumer, target, capacity, settler)
            consumer.members.append(member)
            self._members[member.mid] = member
            self._pump(consumer, time.monotonic(), time.time(), out)
        for t, delivery in out:
            t(delivery)
        return member.mid

    def pause(self, mid: int) -> None:
        """Hand member `mid` nothing more (it is draining before `detach`)."""
        with self._lock:
            member = self._members.get(mid)
            if member is not None:
                member.capacity = 0

    def detach(self, mid: int) -> None:
        """Remove a member; what it still holds is redelivered at once to the others."""
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            member = self._members.pop(mid, None)
            if member is None:
                return
            member.active = False
            consumer = member.consumer
            consumer.members = [m for m in consumer.members if m is not member]
            consumer.rr = 0
            for seq, pending in consumer.pending.items():
                if pending.member is member:
                    pending.member = None
                    pending.deadline = 0.0
                    consumer.ready.append(seq)
            member.inflight = 0
            if consumer.members:
                self._pump(consumer, time.monotonic(), time.time(), out)
        for target, delivery in out:
            target(delivery)

    def _consumer(self, cid: int) -> _Consumer:
        consumer = self._consumers.get(cid)
        if consumer is None:
            raise NotFound("the durable subscription was deleted")
        return consumer

    # --- settling ----------------------------------------------------------------------

    def ack(self, cid: int, seq: int, count: int) -> bool:
        """Done with the message (a late ack of an earlier delivery counts too)."""
        del count  # any delivery's ack means the work was done
        return self._finish(cid, seq, None, False)

    def term(self, cid: int, seq: int, count: int, dead: bool) -> bool:
        """Never redeliver; `dead` counts it as dead-lettered (the current delivery only)."""
        return self._finish(cid, seq, count, dead)

    def _finish(self, cid: int, seq: int, count: int | None, dead: bool) -> bool:
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            consumer = self._consumers.get(cid)
            if consumer is None:
                return False
            pending = consumer.pending.get(seq)
            if pending is None or (count is not None and pending.count != count):
                return False
            del consumer.pending[seq]
            if dead:
                consumer.dead_lettered += 1
            member = pending.member
            if member is not None:
                member.inflight -= 1
                self._pump(consumer, time.monotonic(), time.time(), out)
        for target, delivery in out:
            target(delivery)
        return True

    def nack(self, cid: int, seq: int, count: int, delay: float) -> bool:
        """Redeliver the current delivery after `delay` seconds (0: at once)."""
        return self._put_back(cid, seq, count, delay, False)

    def release(self, cid: int, seq: int, count: int) -> bool:
        """Hand back a delivery its subscriber never started: redelivered at once, uncounted."""
        return self._put_back(cid, seq, count, 0.0, True)

    def _put_back(self, cid: int, seq: int, count: int, delay: float, uncount: bool) -> bool:
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            consumer = self._consumers.get(cid)
            if consumer is None:
                return False
            pending = consumer.pending.get(seq)
            if pending is None or pending.count != count or pending.member is None:
                return False
            pending.member.inflight -= 1
            pending.member = None
            if uncount:
                pending.count -= 1
            now = time.monotonic()
            if delay > 0:
                pending.deadline = now + delay
                heapq.heappush(consumer.timers, (pending.deadline, seq))
            else:
                pending.deadline = 0.0
                consumer.ready.append(seq)
            self._pump(consumer, now, time.time(), out)
        for target, delivery in out:
            target(delivery)
        return True

    def progress(self, cid: int, seq: int, count: int) -> bool:
        """The handler is still working: restart the delivery's `ack_wait`."""
        with self._lock:
            consumer = self._consumers.get(cid)
            if consumer is None:
                return False
            pending = consumer.pending.get(seq)
            if pending is None or pending.count != count or pending.member is None:
                return False
            pending.deadline = time.monotonic() + consumer.ack_wait
            heapq.heappush(consumer.timers, (pending.deadline, seq))
            return True

    # --- timers ----------------------------------------------------------------------------

    def tick(self, cid: int) -> float | None:
        """Expire consumer `cid`'s due timers and hand out what that frees.

        Returns the seconds until its next timer, or None if it has none.
        """
        out: list[tuple[Callable[[Any], object], Any]] = []
        with self._lock:
            consumer = self._consumers.get(cid)
            if consumer is None:
                return None
            now = time.monotonic()
            timers = consumer.timers
            pending_of = consumer.pending
            freed = False
            while timers and timers[0][0] <= now:
                deadline, seq = heapq.heappop(timers)
                pending = pending_of.get(seq)
                if pending is None or pending.deadline != deadline:
                    continue  # settled, or the timer was replaced
                holder = pending.member
                if holder is not None:
                    holder.inflight -= 1  # ack_wait ran out
                    pending.member = None
                pending.avoid = holder
                pending.deadline = 0.0
                consumer.ready.append(seq)
                freed = True
            if freed and consumer.members:
                self._pump(consumer, now, time.time(), out)
            while timers:
                deadline, seq = timers[0]
                pending = pending_of.get(seq)
                if pending is not None and pending.deadline == deadline:
                    break
                heapq.heappop(timers)
            wait = max(0.0, timers[0][0] - now) if timers else None
        for target, delivery in out:
            target(delivery)
        return wait

    # --- handing out ---------------------------------------------------------------------

    def _pump(
        self,
        consumer: _Consumer,
        now: float,
        wall: float,
        out: list[tuple[Callable[[Any], object], Any]],
    ) -> None:
        """Give members with room the next messages: redeliveries first, then new ones."""
        stream = consumer.stream
        entries = stream.entries
        if stream.max_age is not None:
            stream.evict(wall)
        ready = consumer.ready
        pending_of = consumer.pending
        while True:
            # The next message: a redelivery, or the next new one the filter passes.
            seq = 0
            avoid = None
            entry = None
            from_ready = False
            while ready:
                candidate = ready.popleft()
                waiting = pending_of.get(candidate)
                if waiting is None or waiting.member is not None:
                    continue  # settled (a late ack) or already out again
                entry = entries.get(candidate)
                if entry is None:
                    del pending_of[candidate]  # evicted by a limit meanwhile
                    continue
                seq, avoid, from_ready = candidate, waiting.avoid, True
                break
            if entry is None:
                cursor = max(consumer.cursor, stream.first)
                last = stream.last
                while cursor <= last:
                    candidate_entry = entries[cursor]
                    if consumer.wants(candidate_entry.message.topic):
                        entry, seq = candidate_entry, cursor
                        break
                    cursor += 1
                consumer.cursor = cursor  # at the candidate, not past it
                if entry is None:
                    return
            member = consumer.free_member(avoid)
            if member is None:
                if from_ready:
                    ready.appendleft(seq)
                return
            if not from_ready:
                consumer.cursor = seq + 1
            pending = pending_of.get(seq)
            if pending is None:
                pending = pending_of[seq] = _Pending()
            pending.count += 1
            pending.member = member
            pending.deadline = now + consumer.ack_wait
            pending.avoid = None
            heapq.heappush(consumer.timers, (pending.deadline, seq))
            member.inflight += 1
            message = PythonDurableMessage(
                entry.message, f"{stream.name}:{seq}", pending.count, self, (consumer.cid, seq)
            )
            message.settler = member.settler
            out.append((member.target, message))

    # --- looking ------------------------------------------------------------------------------

    def info(self) -> list[dict[str, Any]]:
        """Every stream and its durables, as plain dicts (see `StreamInfo`)."""
        with self._lock:
            time_now = time.time()
            out = []
            for stream in self._streams.values():
                stream.evict(time_now)
                durables = []
                for consumer in stream.consumers.values():
                    cursor = max(consumer.cursor, stream.first)
                    if consumer.match_all:
                        waiting = stream.last + 1 - cursor
                    else:
                        waiting = sum(
                            1
                            for seq in range(cursor, stream.last + 1)
                            if consumer.wants(stream.entries[seq].message.topic)
                        )
                    durables.append(
                        {
                            "name": consumer.name,
                            "pattern": consumer.pattern,
                            "pending": waiting,
                            "unacked": len(consumer.pending),
                            "redelivered": sum(1 for p in consumer.pending.values() if p.count > 1),
                            "dead_lettered": consumer.dead_lettered,
                            "consumers": len(consumer.members),
                        }
                    )
                out.append(
                    {
                        "name": stream.name,
                        "subjects": list(stream.subjects),
                        "max_age": stream.max_age,
                        "max_count": stream.max_count,
                        "max_bytes": stream.max_bytes,
                        "messages": len(stream.entries),
                        "bytes": stream.bytes,
                        "first_sequence": stream.first,
                        "last_sequence": stream.last,
                        "durables": durables,
                    }
                )
            return out
