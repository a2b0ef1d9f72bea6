"""The long form (`pytest -m slow tests/faults`): several holder processes write to
one fenced log while the server is frozen again and again, or killed and
restarted, for about a minute per case.

- Freezes (Redis, etcd) and restarts of etcd (which keeps its data): the
  holdings in the log never overlap, tokens grow with them, and the fence never
  has to refuse anyone (every holder stopped within its lease).
- Restarts of Redis without persistence: mutual exclusion is not promised
  (docs/guarantees.md), but no two holders ever carry the same token, so the
  fence keeps working: whatever it accepted came in token order.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from _servers import ServerProcess
from faults._locks import TTL, url_of

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_lock_worker.py")
PROCS = 3
SECONDS = 60.0


def _entries(log: Path) -> list[tuple[int, int, int, str]]:
    out = []
    for line in log.read_text().splitlines():
        t, token, pid, verdict = line.split()
        out.append((int(t), int(token), int(pid), verdict))
    return out


def _wait_for_entries(log: Path, more_than: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60.0
    while len(_entries(log)) <= more_than:
        assert all(p.poll() is None for p in procs), "a worker died"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.1)


def _run(kind: str, server: ServerProcess, tmp_path: Path, fault: Callable[[], None]) -> list:
    log = tmp_path / "log"
    log.write_text("")
    name = f"soak-{uuid.uuid4().hex[:8]}"
    argv = [str(TTL[kind]), str(log), str(SECONDS)]
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), url_of(kind, server), name, *argv])
        for _ in range(PROCS)
    ]
    try:
        end = time.monotonic() + SECONDS - 10.0
        while time.monotonic() < end:
            _wait_for_entries(log, len(_entries(log)) + 5, procs)
            fault()
        for p in procs:
            assert p.wait(SECONDS + 60.0) == 0
    finally:
        server.resume()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    return _entries(log)


def _check_exclusive(entries: list[tuple[int, int, int, str]]) -> None:
    assert all(verdict == "ok" for *_, verdict in entries), "the fence refused a late holder"
    spans: dict[int, list[int]] = {}
    owners: dict[int, set[int]] = {}
    for t, token, pid, _ in entries:
        spans.setdefault(token, []).append(t)
        owners.setdefault(token, set()).add(pid)
    assert all(len(pids) == 1 for pids in owners.values()), "two holders shared a token"
    ordered = sorted((min(ts), max(ts), token) for token, ts in spans.items())
    for (_, end_a, token_a), (start_b, _, token_b) in itertools.pairwise(ordered):
        assert end_a < start_b, f"token {token_a} still wrote after token {token_b} began"
        assert token_a < token_b


def _freeze(server: ServerProcess, kind: str) -> Callable[[], None]:
    def fault() -> None:
        server.pause()
        time.sleep(2 * TTL[kind])  # the fault itself: frozen for two leases
        server.resume()

    return fault


def _restart(server: ServerProcess) -> Callable[[], None]:
    def fault() -> None:
        server.kill()
        server.start()

    return fault


@pytest.mark.parametrize("kind", ["redis", "etcd"])
def test_holders_never_overlap_across_many_freezes(
    kind: str, server_factory: Callable[[str], ServerProcess], tmp_path: Path
) -> None:
    server = server_factory(kind)
    _check_exclusive(_run(kind, server, tmp_path, _freeze(server, kind)))


def test_holders_never_overlap_across_etcd_restarts(
    server_factory: Callable[[str], ServerProcess], tmp_path: Path
) -> None:
    server = server_factory("etcd")
    _check_exclusive(_run("etcd", server, tmp_path, _restart(server)))


def test_no_two_holders_share_a_token_across_redis_restarts(
    server_factory: Callable[[str], ServerProcess], tmp_path: Path
) -> None:
    server = server_factory("redis")  # no persistence
    entries = _run("redis", server, tmp_path, _restart(server))
    owners: dict[int, set[int]] = {}
    for _, token, pid, _ in entries:
        owners.setdefault(token, set()).add(pid)
    assert all(len(pids) == 1 for pids in owners.values()), "two holders shared a token"
    accepted = [token for _, token, _, verdict in entries if verdict == "ok"]
    assert accepted == sorted(accepted)
