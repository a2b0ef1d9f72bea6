"""What a durable subscriber on a network engine keeps, whatever the engine:
its event loop (settles may come from a handler's thread), its background
tasks, and, for the engines it pulls from, its room and the deliveries it holds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from microstd.broker._durable import DurableOptions
from microstd.broker._durable_delivery import DurableDelivery, DurableMessage, Settler

__all__ = ["Member", "PullMember", "PullMessage"]


class Member:
    """One subscriber of a durable: its loop and the tasks it started."""

    def __init__(self, options: DurableOptions) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.tasks: set[asyncio.Task[None]] = set()

    def call(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` on the member's loop (settles may come from a handler's thread)."""
        if threading.get_ident() == self.thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Any) -> None:
        """Run `coro` in the background, kept until it ends (a stop waits for these)."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class PullMember(Member):
    """A member that pulls deliveries: at most `max_inflight` unsettled at once.

    A subclass implements `send(message, how, delay, dead)`, which settles on
    the engine, and calls `settled` from it first.
    """

    def __init__(self, options: DurableOptions, settler: Settler) -> None:
        super().__init__(options)
        self.settler = settler
        self.delivery: DurableDelivery | None = None
        self.inflight = 0
        self.room = asyncio.Event()
        self.room.set()
        self.stopping = False
        #: Delivered and not yet settled, by id(): what a stop hands back.
        self.held: dict[int, PullMessage] = {}

    def settled(self, message: PullMessage, how: str) -> None:
        """Free the slot of a settled delivery (extending its ack_wait keeps it)."""
        if how != "progress":
            self.held.pop(id(message), None)
            self.inflight -= 1
            self.room.set()

    async def room_for(self) -> int:
        """How many more it may take now; 0 after waiting for a slot to free up."""
        want = self.options.max_inflight - self.inflight
        if want <= 0:
            self.room.clear()
            await self.room.wait()
            return 0
        return want

    def send(self, message: Any, how: str, delay: float, dead: bool) -> None:
        raise NotImplementedError

    async def stop_taking(self, runner: asyncio.Task[None] | None, runs_for: float) -> None:
        """Stop taking deliveries and let the read or pull under way (`runner`,
        which returns within `runs_for` seconds) end: one abandoned now would
        still get messages, stuck until their ack_wait."""
        self.stopping = True
        self.room.set()
        if runner is None:
            return
        done, _ = await asyncio.wait({runner}, timeout=runs_for + 5)
        if not done:
            runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner

    async def hand_back(self) -> None:
        """After the drain: a delivery still held (its handler was cancelled) goes
        back, counted; then every settle and dead letter under way is sent."""
        for message in list(self.held.values()):
            message.settle("nack")
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        await self.settler.flush()


class PullMessage(DurableMessage):
    """A delivery of a `PullMember`: settles go to the member, on its loop."""

    __slots__ = ("_member",)

    def __init__(
        self,
        topic: str,
        data: bytes,
        headers: dict[str, str],
        content_type: str,
        msgid: str,
        count: int,
        member: PullMember,
    ) -> None:
        super().__init__(topic, data, headers, content_type, msgid, count, member.settler)
        self._member = member

    def _send(self, how: str, delay: float, dead: bool) -> None:
        self._member.call(self._member.send, self, how, delay, dead)

    def _progress(self) -> None:
        self._member.call(self._member.send, self, "progress", 0.0, False)
