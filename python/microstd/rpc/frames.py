"""Stream frames and the channels that carry them.

A streaming call is a sequence of frames in each direction, each a message of
its own on the channel: one type byte, then the payload.

| type | byte | payload | meaning |
|---|---|---|---|
| `DATA` | `0x01` | an item, encoded with the call's codec | one request or reply |
| `END` | `0x02` | empty | the sender has no more items (a reply stream's success) |
| `ERROR` | `0x03` | `{"id", "code", "detail", "status"}` | the stream failed; the last frame |
| `REFUSED` | `0x04` | as `ERROR` | refused before the handler ran: safe to retry elsewhere |

Over HTTP the channel is a WebSocket (one binary message per frame; TCP and
aiohttp's bounded read queues carry backpressure); in process it is a pair of
bounded queues (`memory_pair`). Closing a channel before `END` or `ERROR`
cancels the call on the other side.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

__all__ = [
    "DATA",
    "END",
    "ERROR",
    "REFUSED",
    "Channel",
    "MemoryChannel",
    "WebSocketChannel",
    "memory_pair",
]

DATA = 0x01
END = 0x02
ERROR = 0x03
REFUSED = 0x04

END_FRAME = bytes([END])

#: The WebSocket close code for a message over the receiver's size limit.
_MESSAGE_TOO_BIG = 1009

#: Frames a side may have sent and the other not yet taken, per direction, in
#: process (over a WebSocket, aiohttp's read buffer and TCP bound it instead).
MEMORY_WINDOW = 16


class Channel(Protocol):
    """One side of a stream's transport: frames out, frames in, close."""

    async def send(self, frame: bytes) -> None:
        """Send one frame; raises `ConnectionResetError` once the channel is closed."""

    async def receive(self) -> bytes | None:
        """The next frame, or None once the channel is closed (by either side)."""

    async def close(self) -> None:
        """Close the channel (idempotent); the other side's `receive` returns None."""


class MemoryChannel:
    """One end of an in-process channel: bounded queues, so a slow reader
    slows the writer exactly as a socket would."""

    __slots__ = ("_eof", "_inbox", "_peer", "closed")

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue(MEMORY_WINDOW)
        self._peer: MemoryChannel | None = None
        self._eof = False  # the peer closed: what it sent before still arrives
        self.closed = False

    async def send(self, frame: bytes) -> None:
        peer = self._peer
        if self.closed or peer is None or peer.closed:
            raise ConnectionResetError("the stream is closed")
        await peer._inbox.put(frame)

    async def receive(self) -> bytes | None:
        inbox = self._inbox
        if self.closed or (self._eof and inbox.empty()):
            return None
        return await inbox.get()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Frames sent to us are moot now: drop them, which also frees a peer blocked
        # sending to us, and wake our own pending receive.
        _drain(self._inbox)
        self._inbox.put_nowait(None)
        peer = self._peer
        if peer is not None and not peer.closed:
            peer._eof = True
            if not peer._inbox.full():
                peer._inbox.put_nowait(None)  # wakes a receive waiting on an empty inbox


def _drain(queue: asyncio.Queue[bytes | None]) -> None:
    while not queue.empty():
        queue.get_nowait()


def memory_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected in-process channel ends."""
    a, b = MemoryChannel(), MemoryChannel()
    a._peer, b._peer = b, a
    return a, b


class WebSocketChannel:
    """A channel over an aiohttp WebSocket (either side: server or client).

    `too_big` says how the WebSocket ended when a message was over the size
    limit: `"theirs"` when the peer refused ours (it closed with 1009),
    `"ours"` when we refused the peer's.
    """

    __slots__ = ("_close", "_ws", "binary", "raw_receive", "send", "too_big")

    def __init__(self, ws: Any) -> None:
        from aiohttp import WSMsgType

        self._ws = ws
        self._close = WSMsgType.CLOSE
        #: For a reader on the hot path: `raw_receive()` gives aiohttp's message;
        #: one of type `binary` carries a frame (`.data`), anything else goes to
        #: `ended(msg)`. (What `receive` does, without its frame around it.)
        self.binary = WSMsgType.BINARY
        self.raw_receive = ws.receive
        self.too_big: str | None = None
        # Sending is aiohttp's own, with no frame of ours around it (it is per item).
        # On a closed WebSocket it raises a ConnectionResetError, as `Channel.send` says.
        self.send = ws.send_bytes

    async def receive(self) -> bytes | None:
        ws = self._ws
        if ws.closed:
            return None
        msg = await ws.receive()
        if msg.type is self.binary:
            data: bytes = msg.data
            return data
        self.ended(msg)
        return None

    def ended(self, msg: Any) -> None:
        """A message that is not a frame (a close, an error, text): the stream is over."""
        if self._ws.close_code == _MESSAGE_TOO_BIG:
            self.too_big = "theirs" if msg.type is self._close else "ours"

    async def close(self) -> None:
        await self._ws.close()
