"""A child process for the safety tests (run as a script, not collected).

_worker.py count URL COUNTER LOG N   increment COUNTER N times under lock "counter",
                                     appending "start end token" per holding to LOG
_worker.py hold URL NAME TTL         take lock NAME, print its token, then sleep
_worker.py elect URL NAME TTL        become leader of NAME, print the token, then sleep
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from microstd import sync


def count(url: str, counter: Path, log: Path, n: int) -> None:
    with sync.open_sync(url) as locks, log.open("a") as out:
        for _ in range(n):
            with locks.lock("counter", ttl=10.0, wait=60.0) as lease:
                # CLOCK_MONOTONIC is system-wide on Linux: intervals compare across processes.
                start = time.monotonic_ns()
                value = int(counter.read_text() or "0")
                counter.write_text(str(value + 1))
                end = time.monotonic_ns()
            out.write(f"{start} {end} {lease.token}\n")


def hold(url: str, name: str, ttl: float, elect: bool) -> None:
    locks = sync.open_sync(url)
    locks.connect()
    if elect:
        token = locks.elect(name, candidate="doomed", ttl=ttl).token
    else:
        token = locks.acquire(name, ttl=ttl).token
    print(token, flush=True)
    time.sleep(600)


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "count":
        count(url, Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
    else:
        hold(url, sys.argv[3], float(sys.argv[4]), elect=mode == "elect")


if __name__ == "__main__":
    main()
