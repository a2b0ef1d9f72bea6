"""`microstd streams`: a broker's streams and durables, with their counts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import microstd.broker
from microstd.broker import Message


def _streams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microstd", "streams", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MICROSTD_BROKER"},
        check=False,
    )


async def test_streams_shows_durables_with_their_counts(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/b.db"
    async with microstd.broker.open(url) as broker:
        await broker.add_stream("orders", "orders.>", max_count=1000)
        dead: list[Message] = []
        await broker.subscribe("dead.>", dead.append)

        def poison(m: Message) -> None:
            raise ValueError("bad")

        sub = await broker.subscribe(
            "orders.*", poison, durable="billing", max_deliver=1, dead_letter="dead.orders"
        )
        await broker.publish("orders.created", {"id": 1})
        deadline = time.monotonic() + 20
        while not dead:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await sub.unsubscribe()
        await broker.publish("orders.created", {"id": 2})  # waits for billing

        text = await asyncio.to_thread(_streams, "--broker", url)
        as_json = await asyncio.to_thread(_streams, "--broker", url, "--json")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["STREAM", "SUBJECTS", "MESSAGES", "BYTES", "LIMITS"]
    assert lines[1].split()[:3] == ["orders", "orders.>", "2"]
    assert "max_count=1000" in lines[1]
    header = lines[2].split()
    assert header == [
        "DURABLE",
        "PATTERN",
        "PENDING",
        "UNACKED",
        "REDELIVERED",
        "DEAD-LETTERED",
        "CONSUMERS",
    ]
    assert lines[3].split() == ["billing", "orders.*", "1", "0", "0", "1", "0"]
    assert as_json.returncode == 0, as_json.stderr
    [stream] = json.loads(as_json.stdout)
    assert stream["name"] == "orders"
    assert stream["durables"][0]["dead_lettered"] == 1


def test_streams_without_a_broker_is_a_usage_error() -> None:
    result = _streams()
    assert result.returncode == 2
    assert "MICROSTD_BROKER" in result.stderr


def test_a_broker_without_streams_says_so(tmp_path: Path) -> None:
    result = _streams("--broker", f"file://{tmp_path}/empty.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no streams"
