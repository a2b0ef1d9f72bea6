"""A lock holder process for the long fault tests (run as a script, not collected).

    _lock_worker.py URL NAME TTL LOG SECONDS

For SECONDS, take lock NAME again and again (blocking surface) and, while
holding it, append to LOG the way a careful holder writes to a fenced
resource: each write happens only inside the lease's safe window (its expiry
minus the safety margin, checked under the log's file lock), and the log
refuses a token smaller than the largest it has accepted. A line is
`<monotonic ns> <token> <pid> ok|refused`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

from microstd import sync
from microstd.errors import ConnectionFailed, LockLost, LockTimeout
from microstd.sync._expiry import margin


def fenced_append(log: Path, lease: sync.SyncLease) -> bool:
    """Write one entry under `lease`; False once the lease is past its safe window."""
    with log.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # Read before the check: the entry's time is one the lease was known safe at.
        now = time.monotonic_ns()
        if time.time() >= lease.expires_at - margin(lease.ttl):
            return False
        f.seek(0)
        highest = max((int(line.split()[1]) for line in f if line.endswith("ok\n")), default=0)
        verdict = "ok" if lease.token >= highest else "refused"
        # CLOCK_MONOTONIC is system-wide on Linux: times compare across processes.
        f.write(f"{now} {lease.token} {os.getpid()} {verdict}\n")
        f.flush()
        return True


def main() -> None:
    url, name, ttl, log, seconds = (
        sys.argv[1],
        sys.argv[2],
        float(sys.argv[3]),
        Path(sys.argv[4]),
        float(sys.argv[5]),
    )
    end = time.monotonic() + seconds
    with sync.open_sync(url) as locks:
        while time.monotonic() < end:
            try:
                lease = locks.acquire(name, ttl=ttl, wait=ttl)
            except LockTimeout:
                continue
            except ConnectionFailed:
                time.sleep(0.1)  # the server is away: try again shortly
                continue
            try:
                for _ in range(4):
                    if not fenced_append(log, lease):
                        break
                    time.sleep(ttl / 8)
                    try:
                        lease.refresh()
                    except (LockLost, ConnectionFailed):
                        break
            finally:
                with contextlib.suppress(LockLost, ConnectionFailed):
                    lease.release()


if __name__ == "__main__":
    main()
