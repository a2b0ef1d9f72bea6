"""The private loop thread behind the blocking twins of async backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from microstd._loopthread import LoopThread, iterate_blocking


def test_runs_coroutines_and_propagates_their_errors() -> None:
    runner = LoopThread()
    try:

        async def double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        async def fail() -> None:
            raise KeyError("boom")

        assert runner.run(double(21)) == 42
        with pytest.raises(KeyError):
            runner.run(fail())
    finally:
        runner.stop()


def test_iterates_an_async_generator_and_closes_it() -> None:
    runner = LoopThread()
    closed: list[bool] = []

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    try:
        out = []
        for n in iterate_blocking(runner, numbers()):
            out.append(n)
            if n == 3:
                break
        assert out == [0, 1, 2, 3]
        assert closed == [True]
    finally:
        runner.stop()


def test_stop_is_idempotent_and_cancels_leftover_tasks() -> None:
    runner = LoopThread()
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    runner.submit(forever())
    runner.stop()
    runner.stop()
    assert runner.loop.is_closed()
