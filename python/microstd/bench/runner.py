"""Timing one benchmark case: best-of-rounds ops/s, checked before timed."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ROLES", "Case", "Result", "measure", "measure_group"]

#: What a row is in its case: microstd's own implementation ("core": the Rust
#: core, or the path microstd takes by default, such as orjson for JSON), its
#: pure-Python twin, or a peer package (or the stdlib) doing the same work.
ROLES = ("core", "twin", "peer")

_DEFAULT_LABELS = {"rust": "microstd (Rust core)", "python": "twin (pure Python)"}
_DEFAULT_ROLES = {"rust": "core", "python": "twin"}


@dataclass(frozen=True)
class Case:
    """One thing to time.

    Cases of one `group` (the case's title in the report) do the same work
    in different implementations. `impl` names the implementation ("rust",
    "python", or a peer package's name); `label` is how the report shows it
    (unique within the group) and `role` is what it is (see `ROLES`); both
    default from `impl`. `name` describes the row for test ids. `check`, when
    given, is called once with `fn()`'s result before timing and must return
    True, so a fast but wrong implementation cannot win. `in_summary=False`
    keeps a row that is not like-for-like with the peers (a call that skips
    the network) out of the area's summary. `baseline` is kept
    for callers of the pytest benches; the report compares against the twin
    and the best peer instead.
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
    label: str = ""
    role: str = ""
    in_summary: bool = True

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", _DEFAULT_LABELS.get(self.impl, self.impl))
        if not self.role:
            object.__setattr__(self, "role", _DEFAULT_ROLES.get(self.impl, "peer"))
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")


@dataclass(frozen=True)
class Result:
    """A case's best-round throughput, or why it could not be measured (`error`)."""

    case: Case
    ops_per_second: float
    calls: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ops_per_second > 0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def measure(case: Case, *, seconds: float = 0.3, rounds: int = 5) -> Result:
    """Run `case.fn` for about `seconds`, split in rounds; report the best round.

    Nothing a case does escapes as an exception (KeyboardInterrupt aside): a
    failing setup, check, call or teardown becomes a Result with `error` set,
    so one broken case (a peer that rejects an input, a missing optional
    package) cannot end the run.
    """
    return measure_group([case], seconds=seconds, rounds=rounds)[0]


def measure_group(cases: list[Case], *, seconds: float = 0.3, rounds: int = 5) -> list[Result]:
    """Measure the rows of one case together, a round of each in turn.

    Interleaving the rounds means a burst of load from elsewhere on the
    machine hits every implementation alike instead of whichever happened
    to be running, so the ratios between them are steadier than when each
    is timed in one go. Each row still gets about `seconds` in all and its
    best round counts. Failures are per row, as in `measure`.
    """
    errors: dict[int, str] = {}
    per_round: dict[int, int] = {}
    best = dict.fromkeys(range(len(cases)), float("inf"))
    try:
        for i, case in enumerate(cases):
            try:
                if case.setup is not None:
                    case.setup()
                per_round[i] = _calibrate(case, seconds / rounds)
            except _CheckFailed:
                errors[i] = "result check failed"
            except Exception as exc:
                errors[i] = _describe(exc)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(rounds):
                for i, n in per_round.items():
                    if i in errors:
                        continue
                    fn = cases[i].fn
                    try:
                        start = time.perf_counter()
                        for _ in range(n):
                            fn()
                        best[i] = min(best[i], time.perf_counter() - start)
                    except Exception as exc:
                        errors[i] = _describe(exc)
        finally:
            if gc_was_enabled:
                gc.enable()
    finally:
        for i, case in enumerate(cases):
            if case.teardown is not None:
                try:
                    case.teardown()
                except Exception as exc:
                    # A case that cannot clean up may have skewed what ran after it.
                    errors[i] = f"teardown: {_describe(exc)}"
    out: list[Result] = []
    for i, case in enumerate(cases):
        if i in errors:
            out.append(Result(case, 0.0, 0, error=errors[i]))
            continue
        n, t = per_round[i], best[i]
        ops = n * case.ops_per_call / t if t > 0 else float("inf")
        out.append(Result(case, ops, n * rounds))
    return out


class _CheckFailed(Exception):
    pass


def _calibrate(case: Case, round_seconds: float) -> int:
    """Check the case's result once, then find how many calls take `round_seconds`."""
    first = case.fn()
    if case.check is not None and not case.check(first):
        raise _CheckFailed
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            case.fn()
        elapsed = time.perf_counter() - start
        if elapsed >= round_seconds / 4 or batch >= 1 << 24:
            break
        batch *= 4
    return max(1, int(batch * round_seconds / max(elapsed, 1e-9)))
