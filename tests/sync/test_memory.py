"""memory:// specifics: thread and asyncio waiters on one lock, shared names, close."""

from __future__ import annotations

import asyncio
import threading

import pytest

from microstd import sync
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
