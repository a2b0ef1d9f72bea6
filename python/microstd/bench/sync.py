"""`microstd bench sync`: the Rust lock manager against its pure twin and the stdlib.

Groups: an uncontended named lock on the blocking surface (`with
locks.lock(name):`, peer `with threading.Lock():`) and on the async surface
(peer `asyncio.Lock`); hand-offs between two threads and between two asyncio
tasks taking turns on one lock (each turn is one hand-off: the holder keeps
the lock until its partner is queued, then its release gives the lock straight
to the partner; a thread turn includes the GIL switch that takes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from microstd import _accel
from microstd.bench.runner import Case
from microstd.sync import open as open_async
from microstd.sync import open_sync
from microstd.sync.memory import SyncMemoryLocks, _Cores

__all__ = ["cases"]

AREA = "sync"


def _impls() -> list[str]:
    return ["rust", "python"] if _accel.AVAILABLE else ["python"]


def _uncontended_sync(impl: str) -> Callable[[], object]:
    locks = open_sync("memory://", impl=impl)

    def run() -> object:
        with locks.lock("bench", ttl=10.0) as lease:
            return lease.token

    return run


def _threading_lock() -> Callable[[], object]:
    lock = threading.Lock()

    def run() -> object:
        with lock:
            return 1

    return run


class _AsyncRunner:
    """Runs `batch` turns of an async body per call on one private loop,
    made in `setup` and closed in `teardown`."""

    def __init__(self, make: Callable[[], Any], batch: int) -> None:
        self._make = make
        self._batch = batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._body: Any = None

    def setup(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._body = self._make()

    def __call__(self) -> object:
        if self._loop is None:
            self.setup()
        assert self._loop is not None
        return self._loop.run_until_complete(self._body(self._batch))

    def teardown(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


def _async_runner(make: Callable[[], Any], batch: int) -> _AsyncRunner:
    return _AsyncRunner(make, batch)


def _uncontended_async(impl: str, batch: int) -> _AsyncRunner:
    def make() -> Any:
        locks = open_async("memory://", impl=impl)

        async def body(n: int) -> int:
            token = 0
            for _ in range(n):
                async with locks.lock("bench", ttl=10.0) as lease:
                    token = lease.token
            return token

        return body

    return _async_runner(make, batch)


def _asyncio_lock(batch: int) -> _AsyncRunner:
    def make() -> Any:
        lock = asyncio.Lock()

        async def body(n: int) -> int:
            for _ in range(n):
                async with lock:
                    pass
            return n

        return body

    return _async_runner(make, batch)


def _thread_handoff(impl: str, turns: int) -> Callable[[], object]:
    cores = _Cores(impl)
    locks, core = SyncMemoryLocks(cores), cores.locks

    def run() -> object:
        finished = [False, False]

        def partner(me: int) -> None:
            for _ in range(turns):
                with locks.lock("pingpong", ttl=10.0):
                    # Hold until the partner is queued, so each release is a hand-off.
                    while not finished[1 - me] and core.waiting("pingpong") == 0:
                        time.sleep(0)
            finished[me] = True

        other = threading.Thread(target=partner, args=(1,))
        other.start()
        partner(0)
        other.join()
        return 2 * turns

    return run


def _task_handoff(impl: str | None, turns: int) -> _AsyncRunner:
    def make() -> Any:
        if impl is None:
            lock = asyncio.Lock()

            async def turn_peer(n: int) -> None:
                for _ in range(n):
                    async with lock:
                        await asyncio.sleep(0)

            worker = turn_peer
        else:
            locks = open_async("memory://", impl=impl)

            async def turn_ours(n: int) -> None:
                for _ in range(n):
                    async with locks.lock("pingpong", ttl=10.0):
                        await asyncio.sleep(0)

            worker = turn_ours

        async def body(n: int) -> int:
            await asyncio.gather(worker(n), worker(n))
            return 2 * n

        return body

    return _async_runner(make, turns)


def cases(quick: bool) -> list[Case]:
    """The sync benchmark cases; `quick` shortens the hand-off batches."""
    batch = 50 if quick else 200
    out: list[Case] = []
    for impl in _impls():
        out.append(
            Case(
                AREA,
                "uncontended lock, sync surface",
                f"with locks.lock() [{impl}]",
                impl,
                _uncontended_sync(impl),
                baseline=impl == "python",
                check=lambda token: isinstance(token, int) and token > 0,
            )
        )
    out.append(
        Case(
            AREA,
            "uncontended lock, sync surface",
            "with threading.Lock()",
            "threading",
            _threading_lock(),
            label="stdlib threading.Lock",
        )
    )
    for impl in _impls():
        arun = _uncontended_async(impl, batch)
        out.append(
            Case(
                AREA,
                "uncontended lock, async surface",
                f"async with locks.lock() [{impl}]",
                impl,
                arun,
                baseline=impl == "python",
                ops_per_call=batch,
                setup=arun.setup,
                teardown=arun.teardown,
            )
        )
    peer = _asyncio_lock(batch)
    out.append(
        Case(
            AREA,
            "uncontended lock, async surface",
            "async with asyncio.Lock()",
            "asyncio",
            peer,
            label="stdlib asyncio.Lock",
            ops_per_call=batch,
            setup=peer.setup,
            teardown=peer.teardown,
        )
    )
    for impl in _impls():
        out.append(
            Case(
                AREA,
                "hand-off between 2 threads",
                f"thread ping-pong [{impl}]",
                impl,
                _thread_handoff(impl, batch),
                baseline=impl == "python",
                ops_per_call=2 * batch,
                check=lambda n: n == 2 * batch,
            )
        )
    peers: list[str | None] = [*_impls(), None]
    for which in peers:
        runner = _task_handoff(which, batch)
        out.append(
            Case(
                AREA,
                "hand-off between 2 asyncio tasks",
                f"task ping-pong [{which or 'asyncio.Lock'}]",
                which or "asyncio",
                runner,
                label="" if which else "stdlib asyncio.Lock",
                baseline=which == "python",
                ops_per_call=2 * batch,
                check=lambda n: n == 2 * batch,
                setup=runner.setup,
                teardown=runner.teardown,
            )
        )
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int = 20, batch: int = 2000
) -> dict[str, float]:
    """Seconds per call of each fn, best of `rounds`, timing the fns in turn each
    round, so load from elsewhere on the machine hits them all alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for label, fn in fns.items():
            start = time.perf_counter()
            for _ in range(batch):
                fn()
            best[label] = min(best[label], (time.perf_counter() - start) / batch)
    return best


def uncontended_report(rounds: int = 20, batch: int = 2000) -> str:
    """The blocking surface's uncontended cost, Rust core vs twin vs threading.Lock."""
    fns = {impl: _uncontended_sync(impl) for impl in _impls()}
    fns["threading.Lock"] = _threading_lock()
    best = interleaved(fns, rounds=rounds, batch=batch)
    lines = [f"{label:<15} {secs * 1e9:8.0f} ns/op" for label, secs in best.items()]
    if "rust" in best:
        lines.append(f"rust vs python twin: {best['python'] / best['rust']:.2f}x faster")
        lines.append(
            f"rust vs threading.Lock: {best['rust'] / best['threading.Lock']:.2f}x the cost"
        )
    return "\n".join(lines)
