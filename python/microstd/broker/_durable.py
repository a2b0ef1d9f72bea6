"""Durable subscriptions: their options, names, stream limits and infos, in one place.

Every backend validates through this module, so a bad name or limit gets
the same `ValueError` / `InvalidTopic` whichever engine is behind the URL,
before anything is sent to a server.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from microstd.broker._subjects import validate_pattern, validate_subject
from microstd.errors import InvalidArgument, NotSupported

__all__ = [
    "DEAD_LETTER_DELIVERIES",
    "DEAD_LETTER_DURABLE",
    "DEAD_LETTER_ERROR",
    "DEAD_LETTER_ID",
    "DEAD_LETTER_TOPIC",
    "MAX_BACKOFF_STEPS",
    "AckMode",
    "DurableInfo",
    "DurableOptions",
    "Start",
    "StreamInfo",
    "StreamLimits",
    "covers",
    "implicit_stream_name",
    "overlaps",
    "validate_name",
]

#: Headers a dead letter carries besides the original message's own.
DEAD_LETTER_TOPIC = "dead-letter-topic"
DEAD_LETTER_ERROR = "dead-letter-error"
DEAD_LETTER_DELIVERIES = "dead-letter-deliveries"
DEAD_LETTER_DURABLE = "dead-letter-durable"
DEAD_LETTER_ID = "dead-letter-id"

#: Errors are cut to this many characters in the dead-letter header.
MAX_ERROR_CHARS = 1000
#: A backoff schedule longer than this is refused (it is kept per subscription).
MAX_BACKOFF_STEPS = 100
#: Most subjects one stream takes.
MAX_STREAM_SUBJECTS = 100
#: Longest stream or durable name: short enough for every engine's naming rules.
MAX_NAME_CHARS = 64

AckMode = Literal["auto", "manual"]
#: Where a new durable starts: "new" (only messages published from now on),
#: "first" (the oldest retained), a `datetime` (the first published at or
#: after it), or an int (the first with that stream sequence or later).
Start = Literal["new", "first"] | datetime | int

_NAME = re.compile(r"[A-Za-z0-9_-]+")


def validate_name(name: object, what: str) -> str:
    """A stream or durable name: 1-64 letters, digits, `_` or `-`; else ValueError.

    The rule is the intersection of what NATS, Redis, RabbitMQ and SQLite
    accept as names, so a name valid on one backend is valid on all.
    """
    if not isinstance(name, str):
        raise ValueError(f"{what} name must be a str, got {type(name).__name__}")
    if not 0 < len(name) <= MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} must be 1-{MAX_NAME_CHARS} letters, digits, '_' or '-'"
        )
    return name


def _seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be seconds (a number), got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class StreamLimits:
    """Retention limits of one stream; `None` is unlimited. The oldest messages go first."""

    max_age: float | None = None
    max_count: int | None = None
    max_bytes: int | None = None

    @classmethod
    def of(cls, max_age: object, max_count: object, max_bytes: object) -> StreamLimits:
        return cls(
            None if max_age is None else _seconds(max_age, "max_age"),
            None if max_count is None else _positive_int(max_count, "max_count"),
            None if max_bytes is None else _positive_int(max_bytes, "max_bytes"),
        )


def validate_subjects(subjects: object) -> list[str]:
    """A stream's subjects: one pattern or a non-empty list of them, no two overlapping."""
    if isinstance(subjects, str):
        subjects = [subjects]
    if not isinstance(subjects, (list, tuple)) or not subjects:
        raise ValueError("a stream's subjects must be a pattern or a non-empty list of patterns")
    if len(subjects) > MAX_STREAM_SUBJECTS:
        raise ValueError(f"a stream takes at most {MAX_STREAM_SUBJECTS} subjects")
    out: list[str] = []
    for subject in subjects:
        validate_pattern(subject)
        for seen in out:
            if overlaps(seen, subject):
                raise ValueError(f"stream subjects {seen!r} and {subject!r} overlap")
        out.append(subject)
    return out


def declared_stream(
    name: object, subjects: object, max_age: object, max_count: object, max_bytes: object
) -> tuple[list[str], StreamLimits]:
    """Check an `add_stream` call's arguments: `(subjects, limits)`, else ValueError."""
    validate_name(name, "stream")
    return validate_subjects(subjects), StreamLimits.of(max_age, max_count, max_bytes)


def refuse_overlap(
    name: str, subjects: Sequence[str], streams: Iterable[tuple[str, Sequence[str]]]
) -> None:
    """ValueError if a subject of stream `name` overlaps one of another stream's
    (`streams`: `(name, subjects)` pairs, which may include `name` itself)."""
    for other, theirs in streams:
        if other == name:
            continue
        for mine in subjects:
            for subject in theirs:
                if overlaps(mine, subject):
                    raise ValueError(
                        f"stream subject {mine!r} overlaps {subject!r} of stream {other!r}"
                    )


def covers(subject: str, pattern: str) -> bool:
    """True if every topic `pattern` matches is also matched by the stream subject `subject`."""
    s = subject.split(".")
    p = pattern.split(".")
    for i, part in enumerate(s):
        if part == ">":
            return len(p) > i
        if i >= len(p) or p[i] == ">":
            return False
        if part != "*" and (p[i] == "*" or p[i] != part):
            return False
    return len(p) == len(s)


def overlaps(a: str, b: str) -> bool:
    """True if some topic matches both patterns."""
    x = a.split(".")
    y = b.split(".")
    for i in range(max(len(x), len(y))):
        tx = x[i] if i < len(x) else None
        ty = y[i] if i < len(y) else None
        if tx == ">":
            return ty is not None
        if ty == ">":
            return tx is not None
        if tx is None or ty is None:
            return False
        if tx != ty and tx != "*" and ty != "*":
            return False
    return True


def implicit_stream_name(pattern: str) -> str:
    """The name of the stream a durable subscription creates when none covers its pattern.

    Readable (`orders_any-1a2b3c4d` for `orders.*`) and the same in every
    process, with a hash of the pattern so that two patterns never share one.
    """
    words = {"*": "any", ">": "all"}
    slug = "_".join(words.get(t, t) for t in pattern.split("."))
    slug = re.sub(r"[^A-Za-z0-9_-]", "-", slug)[: MAX_NAME_CHARS - 9]
    digest = hashlib.sha256(pattern.encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


@dataclass(frozen=True)
class DurableOptions:
    """The validated options of one durable subscription (see `Broker.subscribe`)."""

    durable: str
    ack: AckMode = "auto"
    max_deliver: int | None = None
    ack_wait: float = 30.0
    backoff: tuple[float, ...] = ()
    dead_letter: str | None = None
    start: Start = "new"
    max_inflight: int = 100

    #: The keyword arguments `subscribe` takes besides `durable`.
    KEYWORDS = frozenset(
        {"ack", "max_deliver", "ack_wait", "backoff", "dead_letter", "start", "max_inflight"}
    )

    @classmethod
    def parse(
        cls, pattern: str, durable: object, options: Mapping[str, Any]
    ) -> DurableOptions | None:
        """The options of a subscribe call, or None for a core subscription.

        Raises InvalidArgument (a TypeError) for an unknown keyword, ValueError /
        InvalidTopic for a bad value, and InvalidArgument (a ValueError) for durable
        options given without `durable`.
        """
        unknown = sorted(set(options) - cls.KEYWORDS)
        if unknown:
            known = sorted({"queue", "durable", *cls.KEYWORDS})
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidArgument(
                f"subscribe() got unknown option(s): {', '.join(unknown)};"
                f" known: {', '.join(known)}.{hint}"
            )
        if durable is None:
            if options:
                names = sorted(options)
                raise InvalidArgument(
                    f"{', '.join(names)} {'applies' if len(names) == 1 else 'apply'} only to"
                    " durable subscriptions: pass durable=NAME"
                )
            return None
        name = validate_name(durable, "durable")
        ack = options.get("ack", "auto")
        if ack not in ("auto", "manual"):
            raise ValueError(f"ack must be 'auto' or 'manual', got {ack!r}")
        max_deliver = options.get("max_deliver")
        if max_deliver is not None:
            max_deliver = _positive_int(max_deliver, "max_deliver")
        ack_wait = _seconds(options.get("ack_wait", 30.0), "ack_wait")
        backoff = _backoff(options.get("backoff"))
        dead_letter = options.get("dead_letter")
        if dead_letter is not None:
            validate_subject(dead_letter)
            if _matches(pattern, dead_letter):
                raise ValueError(
                    f"dead_letter topic {dead_letter!r} matches the subscription's own pattern"
                    f" {pattern!r}: dead letters would be delivered back to it"
                )
        start = _start(options.get("start", "new"))
        max_inflight = _positive_int(options.get("max_inflight", 100), "max_inflight")
        return cls(name, ack, max_deliver, ack_wait, backoff, dead_letter, start, max_inflight)

    def delay_after(self, deliveries: int) -> float:
        """Seconds to wait before redelivering a message whose delivery `deliveries` failed."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(deliveries, len(self.backoff)) - 1]

    def start_fields(self) -> tuple[str, float, int]:
        """`(kind, time, sequence)`: kind is "new", "first", "time" or "sequence"."""
        start = self.start
        if isinstance(start, datetime):
            return "time", start.timestamp(), 0
        if isinstance(start, int):
            return "sequence", 0.0, start
        return start, 0.0, 0

    def refuse(self, backend: str, *names: str) -> None:
        """Raise NotSupported if any of the named options is set to other than its default."""
        defaults = DurableOptions(self.durable)
        for name in names:
            if name == "start" and isinstance(self.start, (datetime, int)):
                kind = "a time" if isinstance(self.start, datetime) else "a sequence"
                raise NotSupported(f"{backend} cannot start a durable subscription at {kind}")
            if name != "start" and getattr(self, name) != getattr(defaults, name):
                raise NotSupported(f"{backend} does not support the durable option {name}=")


def _matches(pattern: str, topic: str) -> bool:
    from microstd.broker._subjects import matches

    return matches(pattern, topic)


def _backoff(value: object) -> tuple[float, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"backoff must be a sequence of seconds, got {value!r}")
    steps = tuple(value)
    if len(steps) > MAX_BACKOFF_STEPS:
        raise ValueError(f"backoff takes at most {MAX_BACKOFF_STEPS} steps, got {len(steps)}")
    return tuple(_seconds(s, "each backoff step", allow_zero=True) for s in steps)


def _start(value: object) -> Start:
    if value in ("new", "first"):
        return value
    if isinstance(value, datetime):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"a start sequence must be >= 1, got {value}")
        return value
    raise ValueError(f"start must be 'new', 'first', a datetime or a sequence int, got {value!r}")


def error_text(exc: BaseException | str) -> str:
    """What a dead letter's error header says: `Type: message`, cut to a bounded length."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())  # headers are one line
    return text[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class DurableInfo:
    """One durable subscription as the engine reports it.

    `pending`: retained messages not yet delivered; `unacked`: delivered and
    awaiting their ack; `redelivered`: of those unacked, how many were
    delivered more than once; `dead_lettered`: messages given up on after
    `max_deliver` deliveries (or `term()`), since the durable was created;
    `consumers`: live subscribers. `None` where the engine cannot tell.
    """

    stream: str
    name: str
    pattern: str
    pending: int | None = None
    unacked: int | None = None
    redelivered: int | None = None
    dead_lettered: int | None = None
    consumers: int | None = None


@dataclass(frozen=True)
class StreamInfo:
    """One stream: its subjects, limits, what it holds and its durable subscriptions."""

    name: str
    subjects: Sequence[str]
    limits: StreamLimits = StreamLimits()
    messages: int | None = None
    bytes: int | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    durables: Sequence[DurableInfo] = field(default_factory=tuple)
