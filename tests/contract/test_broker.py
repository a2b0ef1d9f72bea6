"""Brokers across processes, on this project's network backends (Redis, NATS).

The broker contract itself is microstd.testing's suite (test_broker_suite.py),
run on every backend; this adds what needs a second process.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import microstd.broker

#: Backends whose subscribers may live in other processes.
NETWORK = ["file", "redis", "nats", "postgres", "amqp"]


def _url(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "memory-python":
        return "memory://?impl=python"
    if kind == "file":
        tmp: Path = request.getfixturevalue("tmp_path")
        return f"file://{tmp}/broker.db"
    return str(request.getfixturevalue(f"{kind}_url"))


def topic(prefix: str = "t") -> str:
    """A topic of its own per test, so tests sharing a server never see each other."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def eventually_sync(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.mark.parametrize("kind", NETWORK)
def test_queue_group_across_two_processes(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    url = _url(request, kind)
    base = topic("qg")
    child = Path(__file__).parent.parent / "broker" / "_qg_child.py"
    outs = [tmp_path / f"child{i}.txt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(child), url, f"{base}.*", "workers", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        n = 200
        with microstd.broker.open_sync(url) as pub:
            for i in range(n):
                pub.publish(f"{base}.job", i)

            def handled() -> int:
                return sum(len(o.read_text().split()) for o in outs if o.exists())

            eventually_sync(lambda: handled() >= n, timeout=30)
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(30)
            assert p.stdout is not None
            p.stdout.close()
    ids = [int(x) for o in outs for x in o.read_text().split()]
    assert sorted(ids) == list(range(n))
    # Equal members get a fair share: within 2x of an even split.
    shares = [len(o.read_text().split()) for o in outs]
    assert min(shares) >= n // 4, f"unfair queue group: {shares}"
    assert all(p.returncode == 0 for p in procs)
