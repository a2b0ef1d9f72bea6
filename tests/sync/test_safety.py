"""Proof of safety: mutual exclusion across OS processes (and threads), and
recovery from a holder killed with SIGKILL."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from microstd import sync

WORKER = Path(__file__).with_name("_worker.py")
PROCS, ITERATIONS = 3, 100
# etcd rounds leases up to whole seconds, with a floor of about 2 s.
TTL = {"redis": 1.0, "etcd": 2.0}
MARGIN = 3.0


def _check_intervals(lines: list[str], expected: int) -> None:
    """No two holdings overlap, and tokens grow in the order holdings began."""
    spans = sorted(tuple(int(x) for x in line.split()) for line in lines)
    assert len(spans) == expected
    for (_, end_a, token_a), (start_b, _, token_b) in itertools.pairwise(spans):
        assert end_a <= start_b, "two holders overlapped"
        assert token_a < token_b, "fencing tokens went backwards"


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_processes_increment_a_shared_file_exactly(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    counter, log = tmp_path / "counter", tmp_path / "log"
    counter.write_text("0")
    log.write_text("")
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "count", url, str(counter), str(log), str(ITERATIONS)]
        )
        for _ in range(PROCS)
    ]
    for p in procs:
        assert p.wait(100) == 0
    assert int(counter.read_text()) == PROCS * ITERATIONS
    _check_intervals(log.read_text().splitlines(), PROCS * ITERATIONS)


@pytest.mark.parametrize("impl", ["rust", "python"])
def test_threads_increment_exactly_on_memory(impl: str) -> None:
    import time

    locks = sync.open_sync("memory://", impl=impl)
    state = {"count": 0}
    spans: list[str] = []

    def work() -> None:
        for _ in range(200):
            with locks.lock("counter", ttl=10.0) as lease:
                start = time.monotonic_ns()
                value = state["count"]
                time.sleep(0)  # invite a switch inside the critical section
                state["count"] = value + 1
                spans.append(f"{start} {time.monotonic_ns()} {lease.token}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["count"] == 800
    _check_intervals(spans, 800)


def _start_holder(mode: str, url: str, name: str, ttl: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, name, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip(), "the holder did not start"
    return proc, int(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_killed_holder_loses_the_lock_within_its_ttl(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    ttl = TTL[backend]
    proc, token = _start_holder("hold", url, "doomed-lock", ttl)
    try:
        proc.kill()
        proc.wait(10)
        with sync.open_sync(url) as locks:
            # wait is the bound: LockTimeout here would mean the lock outlived ttl + margin.
            lease = locks.acquire("doomed-lock", ttl=10.0, wait=ttl + MARGIN)
            assert lease.token > token
            lease.release()
    finally:
        _stop(proc)


@pytest.mark.parametrize("backend", ["redis", "etcd"])
def test_leader_failover_after_sigkill(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    ttl = TTL[backend]
    proc, token = _start_holder("elect", url, "doomed-election", ttl)
    try:
        with sync.open_sync(url) as locks:
            assert locks.leader("doomed-election") == "doomed"
            proc.kill()
            proc.wait(10)
            leadership = locks.elect(
                "doomed-election", candidate="heir", ttl=5.0, wait=ttl + MARGIN
            )
            assert leadership.token > token
            assert locks.leader("doomed-election") == "heir"
            leadership.resign()
    finally:
        _stop(proc)
