"""A workload run through a node failure, and the failover costs it measured.

    outcome = await through_failover(op, total=60, kill_at=20, kill=cluster_kill)

`op(i)` is one idempotent operation of the workload (write key i, ...), tried
again with the same `i` after a `ConnectionFailed` until it succeeds, the way
an application retries; `kill()` runs after `kill_at` acknowledged operations.
The outcome says what was acknowledged, what failed at least once (an
ambiguous attempt: it may have been applied), and how long the first success
after the kill took: the failover cost, recorded for the run's summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from microstd.errors import ConnectionFailed

__all__ = ["LONG", "Outcome", "note", "record", "rounds", "summary", "through_failover"]

#: True for the long form of the cluster tests (`-m cluster`).
LONG = False

#: How long one operation may keep failing before the test calls the cluster
#: unavailable (a loaded 2-core machine: generous on purpose).
UNAVAILABLE = 60.0

_costs: list[tuple[str, str, float, int | None]] = []
_notes: list[str] = []


def rounds(size: int) -> int:
    """How many nodes a test kills in turn: one (short form) or each (long form)."""
    return size if LONG else 1


def record(engine: str, what: str, seconds: float, failures: int | None = None) -> None:
    """Note one measured failover cost for the end-of-run summary."""
    _costs.append((engine, what, seconds, failures))


def note(line: str) -> None:
    """Note something a test observed (not a cost) for the end-of-run summary."""
    _notes.append(line)


def summary() -> list[str]:
    """One line per measured failover: engine, operation, seconds, failed attempts."""
    return [
        f"{engine:<16} {what:<56} {seconds:6.2f} s"
        + ("" if failures is None else f"  ({failures} failed calls)")
        for engine, what, seconds, failures in _costs
    ] + _notes


@dataclass
class Outcome:
    """What a workload through a failure saw."""

    acked: dict[int, Any] = field(default_factory=dict)
    #: Operations that failed at least once (each was then retried until acknowledged).
    ambiguous: set[int] = field(default_factory=set)
    #: Seconds from the kill to the first operation acknowledged after it.
    failover: float = 0.0
    #: Attempts that failed between the kill and that first success.
    failures: int = 0


async def through_failover(
    op: Callable[[int], Awaitable[Any]],
    *,
    total: int,
    kill_at: int,
    kill: Callable[[], None],
    pause: float = 0.0,
) -> Outcome:
    """Run `op(0)` .. `op(total - 1)` in order, retrying each on `ConnectionFailed`,
    with `kill()` after `kill_at` of them; `pause` seconds between operations."""
    out = Outcome()
    killed_at: float | None = None
    for i in range(total):
        if i == kill_at:
            kill()
            killed_at = time.monotonic()
        deadline = time.monotonic() + UNAVAILABLE
        while True:
            try:
                out.acked[i] = await asyncio.wait_for(op(i), UNAVAILABLE)
                break
            except ConnectionFailed as exc:
                out.ambiguous.add(i)
                if killed_at is not None and not out.failover:
                    out.failures += 1
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"operation {i} still failing after {UNAVAILABLE}s"
                    ) from exc
                await asyncio.sleep(0.02)
        if killed_at is not None and not out.failover:
            out.failover = time.monotonic() - killed_at
        if pause:
            await asyncio.sleep(pause)
    return out
