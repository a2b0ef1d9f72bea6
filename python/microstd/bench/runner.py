"""Timing one benchmark case: best-of-rounds ops/s, checked before timed."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ROLES", "Case", "Result", "measure"]

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
    result: Result
    try:
        if case.setup is not None:
            case.setup()
        result = _timed(case, seconds, rounds)
    except Exception as exc:
        result = Result(case, 0.0, 0, error=_describe(exc))
    finally:
        if case.teardown is not None:
            try:
                case.teardown()
            except Exception as exc:
                # A case that cannot clean up may have skewed what ran after it.
                result = Result(case, 0.0, 0, error=f"teardown: {_describe(exc)}")
    return result


def _timed(case: Case, seconds: float, rounds: int) -> Result:
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
