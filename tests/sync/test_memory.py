"""memory:// specifics: thread and asyncio waiters on one lock, shared names, close."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from microstd import _accel, sync
from microstd.errors import Closed, LockTimeout
from microstd.sync.memory import _Cores

IMPLS = ["rust", "python"]


@pytest.mark.parametrize("impl", IMPLS)
async def test_threads_and_tasks_wait_on_the_same_lock_in_order(impl: str) -> None:
    url = f"memory://mixed-{impl}?impl={impl}"
    alocks, slocks = sync.open(url), sync.open_sync(url)
    held = await alocks.acquire("shared", ttl=10.0)
    order: list[str] = []

    def thread_waiter() -> None:
        with slocks.lock("shared", ttl=10.0, wait=10.0):
            order.append("thread")

    async def task_waiter() -> None:
        async with alocks.lock("shared", ttl=10.0, wait=10.0):
            order.append("task")

    t = threading.Thread(target=thread_waiter)
    t.start()
    await asyncio.sleep(0.1)
    task = asyncio.create_task(task_waiter())
    await asyncio.sleep(0.1)
    await held.release()
    await asyncio.wait_for(task, 10.0)
    await asyncio.to_thread(t.join, 10.0)
    assert order == ["thread", "task"]


@pytest.mark.parametrize("impl", IMPLS)
async def test_expiry_wakes_an_async_waiter_without_other_calls(impl: str) -> None:
    locks = sync.open(f"memory://?impl={impl}")
    late = await locks.acquire("x", ttl=0.1)
    nxt = await locks.acquire("x", ttl=10.0, wait=5.0)
    assert nxt.token > late.token


@pytest.mark.parametrize("impl", IMPLS)
def test_named_instances_are_shared_and_private_ones_are_not(impl: str) -> None:
    a = sync.open_sync(f"memory://team?impl={impl}")
    b = sync.open_sync(f"memory://team?impl={impl}")
    private = sync.open_sync(f"memory://?impl={impl}")
    lease = a.acquire("n", ttl=10.0)
    with pytest.raises(LockTimeout):
        b.acquire("n", ttl=10.0, wait=0)
    private.acquire("n", ttl=10.0, wait=0).release()
    lease.release()


@pytest.mark.parametrize("impl", IMPLS)
async def test_closing_the_core_fails_waiters(impl: str) -> None:
    cores = _Cores(impl)
    locks = sync.memory.MemoryLocks(cores)
    await locks.acquire("c", ttl=10.0)
    waiter = asyncio.create_task(locks.acquire("c", ttl=10.0))
    await asyncio.sleep(0.05)
    cores.locks.close()
    with pytest.raises(Closed):
        await asyncio.wait_for(waiter, 5.0)
    with pytest.raises(Closed):
        await locks.acquire("other", ttl=1.0)


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10.0
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_rust_thread_waiter_that_gets_the_gil_late_gets_a_live_lease() -> None:
    """The Rust core hands the lock to a blocked thread while another thread holds
    the GIL for longer than the lease: the thread must not return an expired one."""
    if not _accel.AVAILABLE:
        pytest.skip("needs the Rust core")
    core = _accel.require_core().RustLockManager()
    ttl = 0.2
    core.acquire("g", "a", ttl)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(core.acquire("g", "b", ttl, 30.0)))
    t.start()
    _wait_until(lambda: core.waiting("g") == 1, "the thread never queued")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        # The fault: this thread keeps the GIL past both leases; the waiter is
        # granted the lock (in Rust, without the GIL) but cannot return to Python.
        end = time.monotonic() + 4 * ttl
        while time.monotonic() < end:
            pass
    finally:
        sys.setswitchinterval(interval)
    t.join(30.0)
    (lease,) = got
    assert core.holder("g") is not None
    assert core.holder("g")[1] == lease.token
    lease.refresh()
    lease.release()


class _LateGate:
    """A `_Slot` gate whose thread, once woken, is not scheduled for `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._delay = delay

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            time.sleep(self._delay)
        return got

    def release(self) -> None:
        self._lock.release()


def test_twin_thread_waiter_that_wakes_late_gets_a_live_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from microstd.sync import _pure

    ttl = 0.2
    real_init = _pure._Slot.__init__

    def late_slot(self: Any) -> None:
        real_init(self)
        self.gate = _LateGate(3 * ttl)

    monkeypatch.setattr(_pure._Slot, "__init__", late_slot)
    core = _pure.PythonLockManager()
    core.acquire("g", "a", ttl)
    lease = core.acquire("g", "b", ttl, 30.0)
    held = core.holder("g")
    assert held is not None
    assert held[1] == lease.token
    lease.refresh()
    lease.release()
