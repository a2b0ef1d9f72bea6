"""`WatchStream`, the one watch of the disk and network stores, on a fake change feed."""

from __future__ import annotations

import asyncio

import pytest

from microstd.errors import Closed, ConnectionFailed
from microstd.store._watch import WATCH_CAPACITY, Emit, Fail, Unsubscribe, WatchStream
from microstd.store.base import Event


class Feed:
    """A change feed the test drives: `emit` / `fail` as a backend would."""

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.fail: Fail | None = None
        self.stopped = 0
        self.live = asyncio.Event()

    async def subscribe(self, emit: Emit, fail: Fail) -> Unsubscribe:
        self.emit, self.fail = emit, fail
        self.live.set()

        async def unsubscribe() -> None:
            self.stopped += 1

        return unsubscribe


def _stream(feed: Feed) -> WatchStream:
    return WatchStream(feed.subscribe, home=None, pending=set(), streams=set())


async def _started(stream: WatchStream, feed: Feed) -> None:
    await asyncio.wait_for(feed.live.wait(), 5)


async def test_a_lost_feed_delivers_what_is_queued_then_the_error() -> None:
    feed = Feed()
    stream = _stream(feed)
    await _started(stream, feed)
    assert feed.emit is not None
    assert feed.fail is not None
    feed.emit(Event("put", "a"))
    feed.emit(Event("delete", "b"))
    lost = ConnectionFailed("gone")
    feed.fail(lost)
    feed.emit(Event("put", "late"))  # after the end: not delivered
    assert [await stream.__anext__(), await stream.__anext__()] == [
        Event("put", "a"),
        Event("delete", "b"),
    ]
    for _ in range(2):  # and stays ended
        with pytest.raises(ConnectionFailed) as info:
            await stream.__anext__()
        assert info.value is lost


async def test_a_clean_end_stops_iteration() -> None:
    feed = Feed()
    stream = _stream(feed)
    await _started(stream, feed)
    assert feed.fail is not None
    feed.fail(None)
    assert [event async for event in stream] == []


async def test_a_waiting_consumer_is_woken() -> None:
    feed = Feed()
    stream = _stream(feed)
    waiting = asyncio.ensure_future(stream.__anext__())
    await _started(stream, feed)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert feed.emit is not None
    feed.emit(Event("put", "k"))
    assert await asyncio.wait_for(waiting, 5) == Event("put", "k")


async def test_a_consumer_too_far_behind_gets_closed_and_the_feed_stops() -> None:
    feed = Feed()
    stream = _stream(feed)
    await _started(stream, feed)
    assert feed.emit is not None
    for i in range(WATCH_CAPACITY + 1):
        feed.emit(Event("put", f"k{i}"))
    with pytest.raises(Closed, match="behind"):
        await stream.__anext__()
    for _ in range(10):
        await asyncio.sleep(0)
    assert feed.stopped == 1


async def test_aclose_unsubscribes_once() -> None:
    feed = Feed()
    stream = _stream(feed)
    await _started(stream, feed)
    await stream.aclose()
    await stream.aclose()
    assert feed.stopped == 1
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
