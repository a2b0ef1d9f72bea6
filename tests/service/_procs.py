"""Helpers to run services in child processes and wait for them to register."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import microstd.registry
from microstd.errors import NotFound

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def spawn(name: str, registry: str, ttl: float = 2.0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SVC_NAME": name, "MICROSTD_REGISTRY": registry, "SVC_TTL": str(ttl)}
    return subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "proc_service:make"],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def pids(registry: str, name: str) -> set[int]:
    async with microstd.registry.open(registry) as reg:
        try:
            found = await reg.lookup(name)
        except NotFound:
            return set()
    return {int(n.metadata["pid"]) for s in found for n in s.nodes}


async def wait_registered(registry: str, name: str, *procs: subprocess.Popen[bytes]) -> None:
    """Wait until every process in `procs` has registered a node of `name`."""
    deadline = time.monotonic() + 20
    wanted = {p.pid for p in procs}
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                err = p.stderr.read().decode() if p.stderr else ""
                raise RuntimeError(f"service process exited with {p.returncode}:\n{err}")
        if wanted <= await pids(registry, name):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{name} did not register in time")


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if p.stderr is not None:
            p.stderr.close()
