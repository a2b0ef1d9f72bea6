"""microstd._tasks: waits and stops that do not lose a cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from microstd._tasks import stop_task, wait_event


async def test_a_cancellation_as_the_event_is_set_is_not_lost() -> None:
    # asyncio.wait_for(event.wait(), t) returns normally here on Python 3.11.
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 10.0))
    await asyncio.sleep(0)  # the task is waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_event_answers_whether_the_event_is_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, 0.0) is True


async def test_stop_task_ends_a_task_that_swallows_a_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a client library mid-request can

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_task(task, "test task") is True
    assert task.cancelled()
    assert swallowed == 1


async def test_stop_task_gives_up_on_a_task_that_never_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(deaf())
    await asyncio.sleep(0)
    assert await stop_task(task, "deaf task", tries=2) is False
    assert "deaf task did not stop" in caplog.text
    release.set()
    task.cancel()
    await asyncio.wait((task,), timeout=5)
