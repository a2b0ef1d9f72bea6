"""`file://`: what the contract suites do not cover (restarts, the file itself, options)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microstd.broker
from microstd.broker import Message


async def _eventually(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_durable_messages_survive_every_handle_closing(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/b.db"
    async with microstd.broker.open(url) as broker:
        sub = await broker.subscribe("jobs.*", lambda m: None, durable="worker")
        await sub.unsubscribe()
    # Another process publishes while nobody in this one has the file open.
    code = (
        "import microstd.broker, sys\n"
        "with microstd.broker.open_sync(sys.argv[1]) as b:\n"
        "    for i in range(3): b.publish('jobs.x', i)\n"
    )
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, url], check=True, timeout=60
    )
    got: list[int] = []
    async with microstd.broker.open(url) as broker:
        await broker.subscribe("jobs.*", lambda m: got.append(m.decode()), durable="worker")
        await _eventually(lambda: len(got) == 3)
        [info] = await broker.streams()
        assert info.messages == 3
    assert got == [0, 1, 2]


async def test_the_file_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "b.db"
    async with microstd.broker.open(f"file://{path}") as broker:
        await broker.publish("a.b", b"x")
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT topic, data FROM messages").fetchall() == [("a.b", b"x")]
        finally:
            db.close()


async def test_core_messages_are_forgotten_after_the_window(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/b.db?core_window=0.2&heartbeat=0.1"
    async with microstd.broker.open(url) as broker:
        await broker.add_stream("kept", "kept.>")
        await broker.publish("core.x", b"1")
        await broker.publish("kept.x", b"2")
        db = sqlite3.connect(tmp_path / "b.db")
        try:

            def topics() -> list[str]:
                return [t for (t,) in db.execute("SELECT topic FROM messages ORDER BY seq")]

            await _eventually(lambda: topics() == ["kept.x"])
        finally:
            db.close()


def test_bad_urls_and_options_raise() -> None:
    with pytest.raises(ValueError, match="path"):
        microstd.broker.open("file://")
    for bad in ("poll_interval=0", "synchronous=sometimes", "core_window=x"):
        with pytest.raises(ValueError):
            microstd.broker.open(f"file:///tmp/x.db?{bad}")


async def test_a_message_published_before_subscribing_is_not_delivered(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/b.db"
    async with microstd.broker.open(url) as one, microstd.broker.open(url) as two:
        await one.publish("early.x", b"before")
        got: list[Message] = []
        await two.subscribe("early.*", got.append)
        await one.publish("early.x", b"after")
        await _eventually(lambda: bool(got))
        await asyncio.sleep(0.1)
        assert [m.data for m in got] == [b"after"]
