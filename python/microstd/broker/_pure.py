"""`PythonBroker`: the pure-Python twin of the Rust routing core `RustBroker`.

The same algorithm: a subject trie, queue groups picked round robin with a
counter that survives cache rebuilds, a bounded cache of match results
cleared on subscribe / unsubscribe, and a fan-out loop that calls every
target with the one shared message and reports a raising target to the
error hook. It is the fallback without the extension and the honest
baseline of the benchmarks.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from microstd.broker._streams_pure import PythonStreams
from microstd.broker._subjects import Trie, validate_pattern, validate_subject
from microstd.broker.base import Message, encode_body
from microstd.errors import InvalidTopic

__all__ = ["CACHE_MAX", "PythonBroker", "PythonQueue"]

_log = logging.getLogger("microstd.broker")

#: Distinct subjects kept in the match cache; past this the cache starts over.
CACHE_MAX = 8192


class _Entry:
    __slots__ = ("active", "owner", "queue", "target")

    def __init__(self, target: Callable[[Any], object], owner: object, queue: bool) -> None:
        self.target = target
        self.owner = owner
        # A `PythonQueue`'s push: its result says whether the queue is past its bound.
        self.queue = queue
        self.active = True


class _Group:
    __slots__ = ("counter", "members", "tid")

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.members: list[tuple[int, _Entry]] = []
        self.counter = [0]  # shared with cached pickers, so rotation survives rebuilds


class _Picker:
    __slots__ = ("counter", "members")

    def __init__(self, group: _Group) -> None:
        self.members = [entry for _, entry in group.members]
        self.counter = group.counter

    def pick(self) -> _Entry:
        counter = self.counter
        i = counter[0]
        counter[0] = i + 1
        return self.members[i % len(self.members)]


class PythonBroker:
    """Routing core: subscribe / unsubscribe / publish with the same interface as `RustBroker`."""

    def __init__(self) -> None:
        self._trie = Trie()
        self._subs: dict[int, tuple[list[str], str | None, _Entry]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._group_of_tid: dict[int, tuple[str, str]] = {}
        self._cache: dict[str, tuple[list[_Entry], list[_Picker]]] = {}
        self._ids = itertools.count(1)
        self._on_error: Callable[[BaseException, object], object] | None = None
        #: The durable streams of this core; a publish stores into them first.
        self.streams = PythonStreams()

    def subscribe(
        self,
        pattern: str,
        queue: str | None,
        target: Callable[[Any], object],
        owner: object,
    ) -> int:
        tokens = validate_pattern(pattern)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        sid = next(self._ids)
        # A queue's push (a delivery's target) reports back-pressure; a handler's
        # return value means nothing.
        pushes = getattr(target, "__func__", None) is PythonQueue.push
        entry = _Entry(target, owner, pushes)
        if queue is None:
            self._trie.insert(tokens, sid)
        else:
            key = (pattern, queue)
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(next(self._ids))
                self._trie.insert(tokens, group.tid)
                self._group_of_tid[group.tid] = key
            group.members.append((sid, entry))
        self._subs[sid] = (tokens, queue, entry)
        self._cache.clear()
        return sid

    def unsubscribe(self, sid: int) -> bool:
        found = self._subs.pop(sid, None)
        if found is None:
            return False
        tokens, queue, entry = found
        entry.active = False
        if queue is None:
            self._trie.remove(tokens, sid)
        else:
            key = (".".join(tokens), queue)
            group = self._groups[key]
            group.members = [(i, e) for i, e in group.members if i != sid]
            if not group.members:
                self._trie.remove(tokens, group.tid)
                del self._group_of_tid[group.tid]
                del self._groups[key]
        self._cache.clear()
        return True

    def set_on_error(self, hook: Callable[[BaseException, object], object] | None) -> None:
        self._on_error = hook

    def _lookup(self, subject: str) -> tuple[list[_Entry], list[_Picker]]:
        try:
            hit = self._cache.get(subject)
        except TypeError:
            # Unhashable, so not a str: the same InvalidTopic the Rust core raises.
            validate_subject(subject)
            raise
        if hit is not None:
            return hit
        plain: list[_Entry] = []
        pickers: list[_Picker] = []
        subs = self._subs
        for ident in self._trie.find(validate_subject(subject)):
            sub = subs.get(ident)
            if sub is not None:
                plain.append(sub[2])
            else:
                pickers.append(_Picker(self._groups[self._group_of_tid[ident]]))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        found = self._cache[subject] = (plain, pickers)
        return found

    def publish(self, subject: str, message: object) -> tuple[object, ...]:
        """Call every target `subject` reaches with `message`; returns the owners of the
        queues it left past their bound (block policy), usually `()`."""
        plain, pickers = self._lookup(subject)
        targets = [*plain, *(p.pick() for p in pickers)] if pickers else plain
        over: list[object] | None = None
        for entry in targets:
            if not entry.active:
                continue
            try:
                if entry.target(message) and entry.queue:
                    over = [entry.owner] if over is None else [*over, entry.owner]
            except Exception as exc:
                self._report(exc, entry.owner)
        return () if over is None else tuple(over)

    def send(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> tuple[object, ...]:
        """The whole of one publish: encode `body` into one `Message` and fan it out.
        Returns what `publish` returns."""
        data, ct, hdrs = encode_body(body, content_type, headers)
        message = Message(topic, data, hdrs, ct)
        if self.streams.active:
            validate_subject(topic)
            self.streams.store(message)
        # `publish`'s loop, inlined: calling it would add a Python call per publish
        # that the glue doing this before never paid, and the twin must not slow down.
        plain, pickers = self._lookup(topic)
        targets = [*plain, *(p.pick() for p in pickers)] if pickers else plain
        over: list[object] | None = None
        for entry in targets:
            if not entry.active:
                continue
            try:
                if entry.target(message) and entry.queue:
                    over = [entry.owner] if over is None else [*over, entry.owner]
            except Exception as exc:
                self._report(exc, entry.owner)
        return () if over is None else tuple(over)

    def _report(self, exc: BaseException, owner: object) -> None:
        hook = self._on_error
        try:
            if hook is None:
                raise exc
            hook(exc, owner)
        except Exception:
            # The hook itself failed: nothing left to report to but the log.
            _log.exception("broker error hook failed for %r", owner)

    def targets(self, subject: str) -> list[Callable[[Any], object]]:
        plain, pickers = self._lookup(subject)
        return [e.target for e in (*plain, *(p.pick() for p in pickers)) if e.active]

    def clear(self) -> None:
        for _, _, entry in self._subs.values():
            entry.active = False
        self._trie = Trie()
        self._subs.clear()
        self._groups.clear()
        self._group_of_tid.clear()
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._subs)


class PythonQueue:
    """The twin of `RustQueue`: a subscriber's bounded queue, the same rules.

    `push` never waits: past `max_pending` it drops and counts, or (block
    policy) keeps the message and returns True, so the publisher waits.
    `waker()` is called when a push finds the delivery task idle. `take`
    returns everything queued; an empty result marks the queue idle.
    """

    __slots__ = ("_closed", "_drop", "_idle", "_items", "_max", "_waker", "dropped")

    def __init__(
        self,
        max_pending: int,
        drop_when_full: bool,
        waker: Callable[[], object],
    ) -> None:
        self._items: deque[object] = deque()
        self._max = max(1, max_pending)
        self._drop = drop_when_full
        self._idle = True
        self._closed = False
        self._waker = waker
        self.dropped = 0

    def push(self, message: object) -> bool:
        """Queue `message`; True if the queue is now past its bound (block policy)."""
        if self._closed:
            return False
        items = self._items
        full = len(items) >= self._max
        if full and self._drop:
            self.dropped += 1
            return False
        items.append(message)
        if self._idle:
            self._idle = False
            self._waker()
        return full

    def take(self) -> list[object]:
        items = self._items
        if not items:
            self._idle = True
            return []
        batch = list(items)
        items.clear()
        return batch

    def close(self, discard: bool) -> None:
        self._closed = True
        if discard:
            self._items.clear()

    def over(self) -> bool:
        return len(self._items) > self._max

    def __len__(self) -> int:
        return len(self._items)
