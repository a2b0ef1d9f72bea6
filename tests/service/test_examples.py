"""The examples run: the greeter in one process, then across processes on Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from _procs import ROOT, stop, wait_registered

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
