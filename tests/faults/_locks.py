"""What the lock fault tests share: URLs with short timeouts, bounded waits, and
the checks of a shared log of holdings (no two holders at once, tokens rising)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from _servers import ServerProcess
from microstd.errors import ConnectionFailed, LockLost

T = TypeVar("T")

#: The request timeout of the clients under test (the `timeout` URL option).
TIMEOUT = 1.0
#: Lease lengths: etcd rounds a lease up to whole seconds with a floor of about 2 s.
TTL = {"redis": 1.0, "etcd": 2.0}
#: How long a call may take before the test calls it hung. Generous on purpose
#: (a loaded 2-core machine): it separates "failed after its timeout" from "hung".
HANG = 15.0
#: How long a client may take to work again once its server is back.
RECOVER = 30.0


def url_of(kind: str, server: ServerProcess) -> str:
    if kind == "redis":
        return f"redis://127.0.0.1:{server.port}/0?timeout={TIMEOUT}"
    return f"etcd://127.0.0.1:{server.port}?timeout={TIMEOUT}"


async def never_hangs(call: Awaitable[T], bound: float = HANG) -> T:
    """`await call`, failing the test if it takes longer than `bound` seconds.

    (Not `wait_for`'s TimeoutError: a `LockTimeout` is a TimeoutError too.)
    """
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=bound)
    if not done:
        task.cancel()
        raise AssertionError(f"hung: no result and no error within {bound}s")
    return task.result()


async def fails_fast(call: Awaitable[object], bound: float = HANG) -> ConnectionFailed:
    """The `ConnectionFailed` that `call` raises, within `bound` seconds."""
    try:
        await never_hangs(call, bound)
    except ConnectionFailed as exc:
        return exc
    raise AssertionError("expected ConnectionFailed, but the call succeeded")


async def eventually(call: Callable[[], Awaitable[T]], seconds: float = RECOVER) -> T:
    """`call()`'s result once it stops raising `ConnectionFailed` (polled until `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await never_hangs(call())
        except ConnectionFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def until(check: Callable[[], bool], what: str, seconds: float = RECOVER) -> None:
    """Poll `check` until it holds (the test fails after `seconds`)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


class FencedLog:
    """A resource guarded by fencing tokens, as the docs tell users to build one: it
    refuses a write whose token is smaller than one it has already accepted."""

    def __init__(self) -> None:
        self.highest = 0
        self.accepted: list[tuple[int, str]] = []
        self.refused: list[tuple[int, str]] = []

    def write(self, token: int, who: str) -> bool:
        if token < self.highest:
            self.refused.append((token, who))
            return False
        self.highest = token
        self.accepted.append((token, who))
        return True


def check_spans(spans: list[tuple[float, float, int, Any]]) -> None:
    """Holdings `(start, end, token, who)` never overlap, and tokens grow with starts."""
    ordered = sorted(spans)
    for (_, end_a, token_a, who_a), (start_b, _, token_b, who_b) in itertools.pairwise(ordered):
        assert end_a <= start_b, f"{who_a} (token {token_a}) still held when {who_b} got it"
        assert token_a < token_b, f"token {token_b} of {who_b} is not above {token_a}"


async def hold_in_steps(lease: Any, steps: int, step: float) -> float:
    """Work under `lease` in `steps` steps, the way a careful holder does: a step
    starts and counts only while the lease is inside its safe window (its expiry
    minus the safety margin), and the lease is refreshed as it goes. Returns
    when the last step that counted ended (monotonic)."""
    from microstd.sync._expiry import margin

    end = time.monotonic()
    for _ in range(steps):
        if time.time() >= lease.expires_at - margin(lease.ttl):
            break
        await asyncio.sleep(step)
        # The time is read before the check, so a pause right after it cannot
        # make a step look later than the moment it was known to be safe.
        now = time.monotonic()
        if time.time() >= lease.expires_at - margin(lease.ttl):
            break
        end = now
        try:
            await lease.refresh()
        except (LockLost, ConnectionFailed):
            break
    return end
