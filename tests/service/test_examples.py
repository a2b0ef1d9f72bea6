"""The examples run: the greeter in one process, then across processes on Redis."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO

import pytest
from _procs import ROOT, stop, wait_registered

import microstd

EXAMPLES = ROOT / "examples"


def run_example(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_quickstart_on_embedded_defaults() -> None:
    result = run_example("quickstart.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Hello, Ada!", "error 400: name must not be empty"]


def start_greeter(registry: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "greeter:svc"],
        cwd=EXAMPLES,
        env={**os.environ, "MICROSTD_REGISTRY": registry},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_greeter_across_processes(redis_url: str) -> None:
    server = start_greeter(redis_url)
    try:
        await wait_registered(redis_url, "greeter", server)
        result = await asyncio.to_thread(
            run_example, "greeter_client.py", "Bob", env={"MICROSTD_REGISTRY": redis_url}
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "Hello, Bob!"
    finally:
        stop(server)
    assert server.returncode == 0


def _without_urls() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("MICROSTD_REGISTRY", "MICROSTD_BROKER", "MICROSTD_LOCKS")
    }


def _run_bare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_urls(),
        check=False,
    )


def test_greeter_client_without_a_registry_says_how_to_give_one() -> None:
    result = _run_bare("greeter_client.py", "Bob")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "MICROSTD_REGISTRY is not set" in result.stderr
    assert "MICROSTD_REGISTRY=redis://127.0.0.1:6379/0 microstd run greeter:svc" in result.stderr


@pytest.mark.parametrize("role", ["consumer", "publisher"])
def test_events_roles_without_a_broker_say_how_to_give_one(role: str) -> None:
    result = _run_bare("events.py", role)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "set MICROSTD_BROKER" in result.stderr


def _lines(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The stream's lines as they come, read on a thread that ends at EOF."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} in {seen}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_leader_worker_resigns_when_stopped(redis_url: str, sig: signal.Signals) -> None:
    env = {**_without_urls(), "MICROSTD_LOCKS": redis_url, "MICROSTD_REGISTRY": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "leader_worker.py"],
        cwd=EXAMPLES,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    assert proc.stdout is not None
    lines, reader = _lines(proc.stdout)
    try:
        _wait_for(lines, "writing report 0", seen)
        locks = microstd.sync.open_sync(redis_url)
        try:
            assert locks.leader("report-writer") is not None
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 0, seen
            _wait_for(lines, "resigned", seen)
            # Resigned, not left to expire: nobody leads right after the exit.
            assert locks.leader("report-writer") is None
        finally:
            locks.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=30)
        proc.stdout.close()


def test_greeter_without_a_registry_says_others_cannot_find_it() -> None:
    proc = subprocess.Popen(
        [sys.executable, "greeter.py"],
        cwd=EXAMPLES,
        env=_without_urls(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # written before it starts serving
        assert "MICROSTD_REGISTRY is not set" in first
    finally:
        proc.kill()  # it may not have reached its own SIGTERM handling yet
        proc.wait(timeout=30)
        proc.stderr.close()
