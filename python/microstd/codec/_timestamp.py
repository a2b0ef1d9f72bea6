"""`Timestamp`: an instant a `datetime` cannot hold exactly.

msgpack timestamps carry nanoseconds and years from about -292 billion to
+292 billion; `datetime` holds microseconds and years 1 to 9999. A decoded
timestamp that fits a datetime exactly becomes an aware UTC `datetime`, as
before; any other (nanoseconds, year 0, year 10000...) becomes a `Timestamp`,
which encodes back to the same bytes instead of raising or losing digits.
CBOR's epoch timestamps (tag 1) outside datetime's years decode to one too.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["Timestamp"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MIN_SECONDS = -(2**63)
_MAX_SECONDS = 2**63 - 1


class Timestamp:
    """Seconds since 1970-01-01T00:00:00Z (any int64) plus 0..999,999,999 nanoseconds."""

    __slots__ = ("nanoseconds", "seconds")

    def __init__(self, seconds: int, nanoseconds: int = 0) -> None:
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise TypeError(f"Timestamp seconds must be an int, got {type(seconds).__name__}")
        if not isinstance(nanoseconds, int) or isinstance(nanoseconds, bool):
            raise TypeError(
                f"Timestamp nanoseconds must be an int, got {type(nanoseconds).__name__}"
            )
        if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
            raise ValueError("Timestamp seconds must fit in 64 bits")
        if not 0 <= nanoseconds < 1_000_000_000:
            raise ValueError("Timestamp nanoseconds must be in 0..999999999")
        self.seconds = seconds
        self.nanoseconds = nanoseconds

    @classmethod
    def from_datetime(cls, value: _dt.datetime) -> Timestamp:
        """The instant of an aware datetime."""
        if value.utcoffset() is None:
            raise ValueError("a naive datetime names no instant: attach a tzinfo")
        delta = value - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        seconds, rest = divmod(micros, 1_000_000)
        return cls(seconds, rest * 1000)

    def to_datetime(self) -> _dt.datetime:
        """An aware UTC datetime, when one holds this instant exactly (else ValueError)."""
        if self.nanoseconds % 1000:
            raise ValueError(f"{self!r} has nanoseconds a datetime cannot hold")
        try:
            return _EPOCH + _dt.timedelta(
                seconds=self.seconds, microseconds=self.nanoseconds // 1000
            )
        except OverflowError:
            raise ValueError(f"{self!r} is outside datetime's years 1..9999") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timestamp):
            return NotImplemented
        return self.seconds == other.seconds and self.nanoseconds == other.nanoseconds

    def __hash__(self) -> int:
        return hash((Timestamp, self.seconds, self.nanoseconds))

    def __repr__(self) -> str:
        return f"Timestamp(seconds={self.seconds}, nanoseconds={self.nanoseconds})"
