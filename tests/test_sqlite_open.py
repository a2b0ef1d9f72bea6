"""`file://` stores and brokers open a database file another process is opening too.

Converting a new file to WAL fails at once, busy timeout or not, while another
connection holds a write lock on it, which is what a second process doing the
same conversion at the same moment holds: two processes opening a fresh
`file://` broker together failed with "database is locked" about once in a
few hundred runs. Opening must wait, as every other write does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import microstd.broker
import microstd.store
from microstd import _sqlite
from microstd.errors import ConnectionFailed


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """A rollback-journal file with a write lock held, as a concurrent opener converting
    it to WAL holds it."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _open_and_use(kind: str, url: str) -> None:
    if kind == "store":
        with microstd.store.open_sync(url) as store:
            store.write("k", 1)
            assert store.read("k").value == 1
    else:
        with microstd.broker.open_sync(url) as broker:
            broker.publish("a.b", b"x")


@pytest.mark.parametrize("kind", ["store", "broker"])
def test_opening_waits_for_another_process_converting_the_file(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared.db"
    holder = _hold_write_lock(path)
    waits: list[float] = []
    pause = _sqlite._pause

    def first_wait_releases(seconds: float) -> None:
        # The opener found the file locked and is waiting: the other process
        # finishes its conversion now.
        if not waits:
            holder.execute("ROLLBACK")
        waits.append(seconds)
        pause(seconds)

    monkeypatch.setattr(_sqlite, "_pause", first_wait_releases)
    _open_and_use(kind, f"file://{path}?timeout=30")
    assert waits, "the lock was never met"
    holder.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kind", ["store", "broker"])
def test_opening_gives_up_after_its_timeout(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(ConnectionFailed, match="database is locked"):
            _open_and_use(kind, f"file://{path}?timeout=0.3")
    finally:
        holder.close()
