"""Converters from source values (often text) to scalar field types."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from pathlib import PurePath
from typing import Any

from microstd.config.durations import parse_duration
from microstd.config.secrets import Secret

__all__ = ["FALSE", "SCALARS", "SUBCLASS_SCALARS", "TRUE", "to_bool"]

TRUE = {"1", "true", "yes", "on", "y", "t"}
FALSE = {"0", "false", "no", "off", "n", "f"}


def to_bool(tp: Any, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in TRUE:
            return True
        if s in FALSE:
            return False
    raise ValueError("not a boolean")


def _to_int(tp: Any, v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("bool is not an int")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip().replace("_", "")
        if len(s) > 100:
            raise ValueError("too long")
        return int(s, 0) if s[:2].lower() in ("0x", "0o", "0b") else int(s)
    raise TypeError("not an int")


def _to_float(tp: Any, v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("bool is not a float")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and len(v) <= 100:
        return float(v.strip())
    raise TypeError("not a float")


def _to_str(tp: Any, v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    raise TypeError("not a string")


def _to_secret(tp: Any, v: Any) -> Secret:
    if isinstance(v, Secret):
        return v
    return Secret(_to_str(str, v))


def _to_bytes(tp: Any, v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise TypeError("not bytes")


def _to_datetime(tp: Any, v: Any) -> datetime:
    if isinstance(v, datetime):
        return v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return datetime.fromtimestamp(v, tz=timezone.utc)
    if isinstance(v, str):
        s = v.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        return datetime.fromisoformat(s)
    raise TypeError("not a datetime")


def _to_date(tp: Any, v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        return date.fromisoformat(v.strip())
    raise TypeError("not a date")


def _to_time(tp: Any, v: Any) -> time:
    if isinstance(v, time):
        return v
    if isinstance(v, str):
        return time.fromisoformat(v.strip())
    raise TypeError("not a time")


def _to_timedelta(tp: Any, v: Any) -> timedelta:
    if isinstance(v, timedelta):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return timedelta(seconds=v)
    if isinstance(v, str):
        return parse_duration(v)
    raise TypeError("not a duration")


def _to_enum(tp: Any, v: Any) -> Any:
    if isinstance(v, tp):
        return v
    try:
        return tp(v)
    except ValueError:
        pass
    if isinstance(v, str):
        for member in tp:
            if member.name == v or member.name.lower() == v.strip().lower():
                return member
            if str(member.value) == v:
                return member
    raise ValueError("not a member")


def _to_path(tp: Any, v: Any) -> Any:
    if isinstance(v, (str, PurePath)):
        return tp(v)
    raise TypeError("not a path")


SCALARS: dict[Any, Callable[[Any, Any], Any]] = {
    bool: to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    Secret: _to_secret,
    bytes: _to_bytes,
    datetime: _to_datetime,
    date: _to_date,
    time: _to_time,
    timedelta: _to_timedelta,
}
SUBCLASS_SCALARS: list[tuple[type, Callable[[Any, Any], Any]]] = [
    (enum.Enum, _to_enum),
    (PurePath, _to_path),
]
