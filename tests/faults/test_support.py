"""`faults._support.stop_tasks` and `clean_up`: they check that tasks ended and
clean-ups finished, and never hide the failure of the test body that called them
from a `finally`."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from faults._support import clean_up, stop_tasks
from microstd.errors import ConnectionFailed


async def _stubborn(released: asyncio.Event) -> None:
    """A task that swallows every cancellation (as a client library may), until
    `released` is set."""
    while not released.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await released.wait()


async def _fails() -> None:
    raise KeyError("from the task")


async def _connection_lost() -> None:
    raise ConnectionFailed("from the task")


async def test_tasks_that_end_pass() -> None:
    sleeping = asyncio.create_task(asyncio.sleep(10))
    lost = asyncio.create_task(_connection_lost())
    await asyncio.sleep(0)
    await stop_tasks(sleeping, lost, expected=(ConnectionFailed,))
    assert sleeping.cancelled()


async def test_a_task_that_does_not_end_fails_a_passing_test() -> None:
    released = asyncio.Event()
    stubborn = asyncio.create_task(_stubborn(released))
    await asyncio.sleep(0)  # started: a task cancelled before its first step just ends
    with pytest.raises(AssertionError, match=r"did not end within 0\.5s"):
        await stop_tasks(stubborn, bound=0.5)
    released.set()
    await stubborn


async def test_an_unexpected_error_of_a_task_fails_a_passing_test() -> None:
    failing = asyncio.create_task(_fails())
    await asyncio.sleep(0)
    with pytest.raises(AssertionError, match="ended with KeyError") as caught:
        await stop_tasks(failing)
    assert isinstance(caught.value.__cause__, KeyError)


async def test_a_failing_body_is_what_is_reported() -> None:
    released = asyncio.Event()
    stubborn = asyncio.create_task(_stubborn(released))
    failing = asyncio.create_task(_fails())
    await asyncio.sleep(0)

    async def body() -> None:
        try:
            raise ValueError("the body failed")
        finally:
            await stop_tasks(stubborn, failing, bound=0.5)

    with pytest.raises(ValueError, match="the body failed") as caught:
        await body()
    released.set()
    await stubborn
    if sys.version_info >= (3, 11):
        notes = caught.value.__notes__
        assert any("did not end within 0.5s" in n for n in notes), notes
        assert any("ended with KeyError" in n for n in notes), notes


async def _raises() -> None:
    raise KeyError("from the clean-up")


async def test_a_clean_up_that_fails_fails_a_passing_test() -> None:
    with pytest.raises(KeyError, match="from the clean-up"):
        await clean_up(_raises(), "raises()")
    with pytest.raises(AssertionError, match=r"hung: .* within 0\.2s"):
        await clean_up(asyncio.sleep(10), "sleep(10)", bound=0.2)


async def test_a_failing_body_is_what_is_reported_after_a_clean_up() -> None:
    async def body() -> None:
        try:
            raise ValueError("the body failed")
        finally:
            await clean_up(_raises(), "raises()")
            await clean_up(asyncio.sleep(10), "sleep(10)", bound=0.2)

    with pytest.raises(ValueError, match="the body failed") as caught:
        await body()
    if sys.version_info >= (3, 11):
        notes = caught.value.__notes__
        assert any("raises() raised KeyError" in n for n in notes), notes
        assert any("sleep(10) raised AssertionError('hung" in n for n in notes), notes
