"""Opening a SQLite file in WAL mode that other processes open at the same time.

`file://` stores and brokers share one database file between processes.
Their writers use ``BEGIN IMMEDIATE`` and SQLite's busy timeout, so they wait
for each other. Opening is where that is not enough: converting a new file to
WAL needs the file to itself, and SQLite fails it at once, without running the
busy handler, when another connection holds a write lock on the still
rollback-journal file, which is what a second process converting it at the
same moment holds. So `open_wal` reads the journal mode first (a file already
in WAL needs no lock), and retries the conversion and the schema on "database
is locked" until `timeout` seconds have passed, as the busy timeout would.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["busy", "open_wal", "retry_busy"]

T = TypeVar("T")

# Backoff between retries, seconds: short at first (a conversion takes
# milliseconds), never long enough to overshoot a deadline by much.
_FIRST_PAUSE = 0.002
_MAX_PAUSE = 0.05
# SQLite's primary result codes (sqlite3.SQLITE_BUSY / SQLITE_LOCKED from Python 3.11 on).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # before Python 3.11 the code is only in the message
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def retry_busy(work: Callable[[], T], deadline: float) -> T:
    """`work()`, again after a short pause while it fails busy, until `deadline`
    (a `time.monotonic()` value); then its last error."""
    pause = _FIRST_PAUSE
    while True:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            if not busy(exc) or time.monotonic() + pause >= deadline:
                raise
        _pause(pause)
        pause = min(pause * 2, _MAX_PAUSE)


def _to_wal(db: sqlite3.Connection) -> None:
    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal mode is {mode!r})")


def open_wal(path: Path, *, timeout: float, synchronous: str, schema: str) -> sqlite3.Connection:
    """A connection to `path` (created if missing) in WAL mode, with `schema`
    applied; busy timeout `timeout` seconds. Raises `sqlite3.Error` / `OSError`."""
    deadline = time.monotonic() + timeout
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        retry_busy(lambda: _to_wal(db), deadline)
        db.execute(f"PRAGMA synchronous={synchronous}")
        retry_busy(lambda: db.executescript(schema), deadline)
    except BaseException:
        db.close()
        raise
    return db
