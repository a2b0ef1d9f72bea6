"""file:// specifics: durability under SIGKILL, URL forms, WAL, revisions, sweeping."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import microstd.store
from microstd.errors import Closed, ConnectionFailed
from microstd.store.file import FileStore

WRITER = textwrap.dedent(
    """
    import sys
    import microstd.store

    store = microstd.store.open_sync("file://" + sys.argv[1])
    i = 0
    while True:
        key = f"k{i:06d}"
        store.write(key, {"i": i, "pad": "x" * 100})
        print(key, flush=True)  # printed only once the write is acknowledged
        i += 1
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "durable.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acked) < 150:
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read() if proc.stderr else ''}"
            acked.append(line.strip())
        proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is still writing
        proc.wait(10)
        # Lines printed before the kill that we had not read yet were acknowledged too.
        acked += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    with microstd.store.open_sync(f"file://{db}") as store:
        found = store.read_many(acked)
        assert sorted(found) == sorted(acked)
        assert all(found[k].value == {"i": int(k[1:]), "pad": "x" * 100} for k in acked)


async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with microstd.store.open("file://rel.db") as store:
        await store.write("k", 1)
    assert (tmp_path / "rel.db").exists()
    async with microstd.store.open("file://sub/dir/nested.db?synchronous=normal") as store:
        await store.write("k", 2)
    assert (tmp_path / "sub" / "dir" / "nested.db").exists()
    absolute = tmp_path / "abs.db"
    async with microstd.store.open(f"file://{absolute}") as store:
        await store.write("k", 3)
        assert repr(store) == f"FileStore({str(absolute)!r})"
    assert absolute.exists()
    with pytest.raises(ValueError):
        microstd.store.open("file://")
    with pytest.raises(ValueError):
        microstd.store.open(f"file://{absolute}?synchronous=sometimes")


async def test_wal_mode_and_schema(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with microstd.store.open(f"file://{db}") as store:
        await store.write("k", b"v", metadata={"a": "b"})
        raw = sqlite3.connect(db)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            key, meta = raw.execute("SELECT key, metadata FROM records").fetchone()
            assert (key, meta) == ("k", '{"a": "b"}')
        finally:
            raw.close()


async def test_revisions_only_grow_across_reopen(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/r.db"
    async with microstd.store.open(url) as store:
        first = await store.write("k", 1)
        await store.delete("k")
    async with microstd.store.open(url) as store:
        second = await store.write("k", 1)
    assert isinstance(first, int)
    assert isinstance(second, int)
    assert second > first


async def test_watch_sees_other_stores_on_the_same_file(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/shared.db"
    async with microstd.store.open(url) as watcher, microstd.store.open(url) as writer:
        events = watcher.watch("p/")
        pending = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.05)  # the file store subscribes synchronously on first step
        rev = await writer.write("p/1", "v")
        event = await asyncio.wait_for(pending, 5)
        assert (event.kind, event.key) == ("put", "p/1")
        assert event.record is not None
        assert event.record.revision == rev
        await events.aclose()  # type: ignore[attr-defined]


async def test_expired_rows_are_swept(tmp_path: Path) -> None:
    db = tmp_path / "sweep.db"
    async with FileStore(db, sweep_interval=0.1) as store:
        await store.write("brief", 1, ttl=0.2)
        await store.write("kept", 1)
        deadline = time.monotonic() + 10
        while True:
            raw = sqlite3.connect(db)
            try:
                keys = [r[0] for r in raw.execute("SELECT key FROM records ORDER BY key")]
            finally:
                raw.close()
            if keys == ["kept"]:
                break
            assert time.monotonic() < deadline, keys
            await asyncio.sleep(0.1)


async def test_unopenable_path_is_a_connection_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = microstd.store.open(f"file://{blocker}/inside.db")
    with pytest.raises(ConnectionFailed):
        await store.write("k", 1)
    await store.close()


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = microstd.store.open(f"file://{tmp_path}/c.db")
    await store.write("k", 1)
    await store.close()
    with pytest.raises(Closed):
        await store.read("k")


async def test_a_batch_failing_mid_transaction_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite failing halfway through `write_many` (a full disk, say): the batch's
    transaction is rolled back, nothing of it is stored, and the connection is not
    left inside a transaction (the next write works and commits)."""
    import microstd.store.file as file_module

    real = file_module._next_revision
    calls = 0

    def failing(db: sqlite3.Connection) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(db)

    async with microstd.store.open(f"file://{tmp_path / 'batch.db'}") as store:
        rev = await store.write("a", "old")
        monkeypatch.setattr(file_module, "_next_revision", failing)
        with pytest.raises(ConnectionFailed):
            await store.write_many({"a": "new", "b": "new", "c": "new", "d": "new"})
        monkeypatch.setattr(file_module, "_next_revision", real)
        assert await store.list() == ["a"]
        assert (await store.read("a")).revision == rev
        assert await store.write("e", 1) > rev
    # A new connection sees the committed write: the old one was not stuck in a transaction.
    async with microstd.store.open(f"file://{tmp_path / 'batch.db'}") as other:
        assert await other.list() == ["a", "e"]
