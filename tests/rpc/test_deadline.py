"""`Deadline`: asyncio.timeout's semantics, with timers shared between deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import pytest

from microstd.rpc.context import within
from microstd.rpc.deadline import _RECENT, Deadline, _slots, resume


async def test_past_the_deadline_the_block_times_out() -> None:
    with pytest.raises(TimeoutError), Deadline(time.monotonic() + 0.01) as deadline:
        await asyncio.sleep(3600)
    assert deadline.expired


async def test_a_deadline_already_passed_times_out_at_the_first_await() -> None:
    with pytest.raises(TimeoutError), Deadline(time.monotonic() - 1.0):
        await asyncio.sleep(3600)


async def test_finishing_in_time_leaves_no_cancel_behind() -> None:
    with Deadline(time.monotonic() + 60.0) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired
    await asyncio.sleep(0.02)  # nothing pending may hit a later await
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0


async def test_many_deadlines_in_one_slot_each_stop_their_own_task() -> None:
    async def slow(seconds: float) -> str:
        try:
            with Deadline(time.monotonic() + seconds):
                await asyncio.sleep(3600 if seconds < 1 else 0)
        except TimeoutError:
            return "timed out"
        return "done"

    results = await asyncio.gather(*(slow(0.01 if i % 2 else 5.0) for i in range(50)))
    assert results == ["done" if i % 2 == 0 else "timed out" for i in range(50)]


async def test_someone_elses_cancel_stays_a_cancel() -> None:
    started = asyncio.Event()

    async def victim() -> None:
        with Deadline(time.monotonic() + 60.0):
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(victim())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_the_earlier_one_wins() -> None:
    seen: list[str] = []

    async def nested() -> None:
        with Deadline(time.monotonic() + 0.01):
            try:
                with Deadline(time.monotonic() + 60.0):
                    await asyncio.sleep(3600)
            except TimeoutError:
                seen.append("inner")

    with pytest.raises(TimeoutError):
        await nested()
    assert seen == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.uncancel is 3.11+")
async def test_a_swallowed_expiry_is_withdrawn() -> None:
    deadline = Deadline(time.monotonic() + 0.01)
    with deadline, contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    assert deadline.expired
    await asyncio.sleep(0)  # would raise CancelledError if the cancel were still pending
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


def test_works_on_successive_event_loops_in_one_thread() -> None:
    async def once() -> bool:
        try:
            await within(asyncio.sleep(3600), 0.01)
        except TimeoutError:
            return True
        return False

    assert asyncio.run(once())
    assert asyncio.run(once())


def test_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        Deadline(time.monotonic()).__enter__()


async def test_within_returns_the_result_in_time() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert await within(answer(), 60.0) == 42


async def test_deadlines_that_end_in_time_release_their_timers() -> None:
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        with Deadline(time.monotonic() + 3600 + i):  # each in a slot of its own
            await asyncio.sleep(0)

    for i in range(100):
        await one(i)
    await asyncio.gather(*(one(i) for i in range(100)))
    # Not a timer per deadline: only the few most recent slots are kept.
    assert len(_slots(loop).pending) <= _RECENT


# --- resume: a coroutine whose first step the caller ran --------------------------------


async def test_resume_finishes_a_coroutine_started_by_hand() -> None:
    got: list[object] = []

    async def steps() -> int:
        got.append(await asyncio.sleep(0, "first"))
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "second")
        got.append(await fut)
        return 7

    coro = steps()
    waiting = coro.send(None)
    assert await resume(coro, waiting) == 7
    assert got == ["first", "second"]


async def test_resume_raises_what_the_coroutine_raises() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("gone")

    coro = fails()
    waiting = coro.send(None)
    with pytest.raises(KeyError, match="gone"):
        await resume(coro, waiting)


async def test_resume_hands_a_deadline_in_to_the_coroutine() -> None:
    cleaned: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("finally")

    coro = slow()
    waiting = coro.send(None)  # suspended in sleep(): the deadline is armed after
    with pytest.raises(TimeoutError), Deadline(time.monotonic() + 0.01):
        await resume(coro, waiting)
    assert cleaned == ["finally"]


async def test_resume_hands_a_cancel_in_and_the_coroutine_may_answer_it() -> None:
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # it may go on awaiting after the cancel
            return "answered"
        return "slept"

    async def runner() -> str:
        coro = stubborn()
        return await resume(coro, coro.send(None))

    task = asyncio.create_task(runner())
    await started.wait()
    task.cancel()
    assert await task == "answered"
