"""Service wiring of the sync area (`svc.locks`) and the leader-elected worker example.

These need `microstd.sync`, which lands from its own branch.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

from _procs import ROOT

import microstd


async def test_locks_area_from_url() -> None:
    url = f"memory://locks{uuid.uuid4().hex[:6]}"
    a = microstd.Service("locker", registry="memory://", locks=url)
    b = microstd.Service("locker", registry="memory://", locks=url)
    async with a, b:
        lease = await a.locks.acquire("job", ttl=5.0, wait=0)
        assert await b.locks.leader("nobody") is None
        other = microstd.sync.open(url)
        async with other:
            try:
                await other.acquire("job", ttl=5.0, wait=0)
            except microstd.errors.LockTimeout:
                pass
            else:
                raise AssertionError("the lock is held by service a")
        await lease.release()


def test_leader_worker_example_on_embedded_locks() -> None:
    result = subprocess.run(
        [sys.executable, "leader_worker.py", "2"],
        cwd=ROOT / "examples",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("elected leader")
    assert [line.split(": ", 1)[1] for line in lines[1:]] == [
        "writing report 0",
        "writing report 1",
        "resigned",  # done: it gives leadership up rather than letting the lease lapse
    ]
