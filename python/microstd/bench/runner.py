"""Timing one benchmark case: best-of-rounds ops/s, checked before timed."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Case", "Result", "measure"]


@dataclass(frozen=True)
class Case:
    """One thing to time.

    Cases of one `group` do the same work in different implementations
    (`impl`: "rust", "python", or a peer package's name); the one marked
    `baseline` is what the others' ratios are against. `check`, when given,
    is called once with `fn()`'s result before timing and must return True,
    so a fast but wrong implementation cannot win.
    """

    area: str
    group: str
    name: str
    impl: str
    fn: Callable[[], object] = field(repr=False)
    baseline: bool = False
    ops_per_call: int = 1
    check: Callable[[object], bool] | None = field(default=None, repr=False)
    setup: Callable[[], None] | None = field(default=None, repr=False)
    teardown: Callable[[], None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Result:
    case: Case
    ops_per_second: float
    calls: int
    error: str | None = None


def measure(case: Case, *, seconds: float = 0.3, rounds: int = 5) -> Result:
    """Run `case.fn` for about `seconds`, split in rounds; report the best round."""
    if case.setup is not None:
        case.setup()
    try:
        first = case.fn()
        if case.check is not None and not case.check(first):
            return Result(case, 0.0, 1, error="result check failed")
        # Calibrate a batch size so one round takes about seconds / rounds.
        batch = 1
        while True:
            start = time.perf_counter()
            for _ in range(batch):
                case.fn()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds / 4 or batch >= 1 << 24:
                break
            batch *= 4
        per_round = max(1, int(batch * (seconds / rounds) / max(elapsed, 1e-9)))
        best = float("inf")
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(per_round):
                    case.fn()
                best = min(best, time.perf_counter() - start)
        finally:
            if gc_was_enabled:
                gc.enable()
        ops = per_round * case.ops_per_call / best if best > 0 else float("inf")
        return Result(case, ops, per_round * rounds)
    except Exception as exc:  # a peer package may reject an input: report, don't abort
        return Result(case, 0.0, 0, error=f"{type(exc).__name__}: {exc}")
    finally:
        if case.teardown is not None:
            case.teardown()
