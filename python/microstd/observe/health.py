"""Readiness: is this service registered, do its backends answer, do the user's checks pass.

`Service` answers `GET /health/ready` with `Health.ready()`: 200 when every
check passes, else 503, with a JSON body naming each check and its outcome:

    {"status": "ok", "service": "greeter", "node": "greeter-1f...",
     "checks": {"registry": "ok", "broker": "ok", "db": "ok"}}

Checks run concurrently, each bounded by `timeout` seconds (a check that does
not answer in time fails). `GET /health/live` only says the process serves
HTTP, with no checks: a liveness probe must not fail because a dependency is
down, or the orchestrator restarts a healthy process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from microstd.errors import InvalidArgument

__all__ = ["Check", "Health", "probe"]

log = logging.getLogger("microstd.health")

#: A user check: sync or async, no arguments; it fails by raising or returning False.
Check = Callable[[], "Awaitable[object] | object"]

#: What the probes of the built-in areas read: a name no application uses.
PROBE_NAME = "microstd-health-probe"


async def probe(area: str, obj: Any) -> None:
    """Raise unless the backend `obj` of `area` answers.

    A backend with an async `ping()` is pinged; otherwise one cheap read is
    made (`exists` on a store, `leader` on locks). A broker without `ping()`
    has nothing to read and counts as answering.
    """
    ping = getattr(obj, "ping", None)
    if ping is not None:
        await ping()
    elif area == "store":
        await obj.exists(PROBE_NAME)
    elif area == "sync":
        await obj.leader(PROBE_NAME)


class Health:
    """The checks one service's readiness runs: built-in ones and the user's."""

    def __init__(self, timeout: float = 2.0) -> None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise InvalidArgument(f"health_timeout must be seconds > 0, got {timeout!r}")
        self.timeout = float(timeout)
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Run `check` (sync or async, no arguments) for every readiness probe.

        It fails by raising or by returning False; anything else passes.
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"a health check needs a non-empty name, got {name!r}")
        if not callable(check):
            raise InvalidArgument(f"health check {name!r} is not callable")
        if name in self._checks:
            raise InvalidArgument(f"health check {name!r} is already added")
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        """The user checks' names, in the order added."""
        return list(self._checks)

    async def _one(self, check: Check) -> str:
        try:
            # A sync check runs inline: it should be quick (a flag, a counter).
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return f"failed: no answer within {self.timeout:g}s"
        except Exception as exc:
            return f"failed: {type(exc).__name__}: {exc}"[:300]
        if result is False:
            return "failed"
        return "ok"

    async def run(self, builtin: dict[str, Check]) -> dict[str, str]:
        """Run `builtin` checks then the user's, concurrently: name -> "ok" or "failed: why"."""
        checks = {**builtin, **self._checks}
        names = list(checks)
        outcomes = await asyncio.gather(*(self._one(checks[n]) for n in names))
        results = dict(zip(names, outcomes, strict=True))
        for name, outcome in results.items():
            if outcome != "ok":
                log.warning("health check %s %s", name, outcome)
        return results
