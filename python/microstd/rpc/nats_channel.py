"""One end of a stream's frame channel over NATS: flow control and liveness.

Each end of a stream has an inbox of its own (`_INBOX.<nuid>`, one
subscription) and publishes to the other end's. A NATS message on an inbox
is one of:

- a frame (DATA, END, ERROR, REFUSED: first byte `0x01`-`0x04`, as in
  `rpc/frames.py`), followed by its sequence number (8 bytes, big endian);
- `CREDIT` (`0x10`), then `upto` and `bytes` (8 bytes each, big endian): the
  receiver's grant, "send frames through sequence number `upto` while the
  frames you sent total less than `bytes` bytes";
- `PING` (`0x11`), alone: sent every `HEARTBEAT` seconds, "I am still here";
- `CLOSE` (`0x12`), alone: this end closed the stream (as a WebSocket's close);
- `BATCH` (`0x13`): several frames in one message, each a 4-byte big-endian
  length then the frame, followed by the first one's sequence number (8 bytes;
  the others follow it: `seq`, `seq + 1`, ...). Credit counts the frames in it,
  not the message.

A sender whose frames come one per turn of the event loop publishes each at
once. One that sends several in the same turn (a producer ahead of the
network: nats-py has not flushed its earlier ones yet) switches to a writer
task of the channel's own: `send` queues a frame (within credit) and the
writer publishes what is queued when the sender lets the loop run, all of it
in one `BATCH` when there are several, so the producer pays nats-py's
per-message cost (a PUB, a parse, a `Msg`, a callback) once per batch instead
of once per item. When the writer finds a single frame queued, the sender is
slow again and goes back to publishing directly (waking a task per frame
would cost it more than batching saves). The queue is bounded by the credit.

Sequence numbers start at 1 in each direction and have no gaps: a frame out
of order means NATS lost messages (a reconnection: core NATS does not keep
what it could not deliver), and the stream breaks rather than silently
missing items.

Flow control: a receiver grants `WINDOW` frames and `WINDOW_BYTES` bytes
ahead of what it has taken, and grants more once half of that is taken. A
sender waits for credit, so a slow reader slows the writer and what a
stream buffers stays within one window (plus one frame) per direction. A
sender that overruns its credit breaks the stream (bounded memory does not
depend on the peer behaving).

Liveness: CREDIT and PING messages are published with this end's inbox as
their reply subject. When the other end's inbox has no subscriber any more
(its process died, its connection dropped, it closed), the NATS server
answers one with a "no responders" status, and this end learns that the
other is gone. Ends `PING` each other every `HEARTBEAT` seconds (so that
answer comes within a second), and one that hears nothing for `SILENCE`
seconds (a frozen process, a partition) gives up on the other. Either way
the stream ends like a WebSocket that broke: the client raises
`ConnectionFailed`, the server cancels the handler. (Frames carry no reply
subject: nats-py checks and the server forwards one per message, a tenth of
a small item's cost.)
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from typing import Any

from microstd.errors import ServiceError

__all__ = [
    "BATCH",
    "CLOSE",
    "CREDIT",
    "HEARTBEAT",
    "PING",
    "SILENCE",
    "WINDOW",
    "WINDOW_BYTES",
    "NatsChannel",
]

CREDIT = 0x10
PING = 0x11
CLOSE = 0x12
BATCH = 0x13

#: Frames and bytes a receiver lets the sender have in flight (per direction, per stream).
#: 1 MiB bounds what one stream may buffer; 512 frames (one CREDIT per 256 small
#: items) let a sender run on without waiting for credit: a window of 64 frames
#: delivered 0.55-0.6x the items/s of a bare nats-py loop, 512 about 0.75x (one
#: message per frame; with BATCH messages, several times the bare loop's items/s).
WINDOW = 512
WINDOW_BYTES = 1 << 20
#: The most credit this end takes from the other beyond what it has sent: a peer
#: granting more (a buggy or hostile one) cannot make it publish without bound.
MAX_WINDOW = 8 * WINDOW
MAX_WINDOW_BYTES = 8 * WINDOW_BYTES
#: The most bytes of frames one BATCH message carries (and never more than the
#: server's max_payload): large enough that per-message costs vanish, small enough
#: that the reader can start on a batch while the writer makes the next.
BATCH_BYTES = 64 * 1024
#: Frames sent directly while earlier ones were still unflushed (in one turn of
#: the event loop) before the writer takes over.
BURST = 4
#: Seconds between PINGs, and of silence after which the other end is given up.
HEARTBEAT = 1.0
SILENCE = 5.0

_PING = bytes([PING])
_CLOSE = bytes([CLOSE])
_CREDIT = struct.Struct(">BQQ")
_BATCH = bytes([BATCH])
_LENGTH = struct.Struct(">I")
#: A frame's own overhead in a single-frame message: its sequence number.
_SEQ_SIZE = 8
#: The NATS status of a message whose subject had no subscriber ("no responders").
_NO_RESPONDERS = "503"


class NatsChannel:
    """One end of a stream over NATS (a `rpc.frames.Channel`).

    `inbox` is this end's subject; `peer` the other end's, once known (a
    server knows it from the stream's opening message; a client from the
    server's first CREDIT). `role` is "client" or "server" (for error wording).
    """

    def __init__(self, nc: Any, inbox: str, role: str) -> None:
        self._nc = nc
        self.inbox = inbox
        self.role = role
        self.peer: str | None = None
        self._sub: Any = None
        self._beat: asyncio.Task[None] | None = None
        # Receiving.
        self._frames: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._expect = 1  # the next frame's sequence number
        self._received_bytes = 0
        self._taken = 0  # sequenced frames handed out by receive()
        self._taken_bytes = 0
        self._unsequenced = 0  # frames that came with the opening message
        self._granted = WINDOW
        self._granted_bytes = WINDOW_BYTES
        self._heard = 0  # messages from the other end (for the silence check)
        # Sending.
        self._seq = 0
        self._sent_bytes = 0
        self._credit = 0
        self._credit_bytes = 0
        self._credited = asyncio.Event()
        self._out: list[bytes] = []  # frames within credit, for the writer to publish
        self._writer: asyncio.Task[None] | None = None
        self._kick: asyncio.Future[None] | None = None  # the idle writer waits on it
        self._direct = True  # publish each frame at once (not through the writer)
        self._burst = 0  # frames published directly while earlier ones were unflushed
        self._max_payload: int = getattr(nc, "max_payload", 1 << 20)
        #: The other end closed or is gone: what it sent before still arrives.
        self.eof = False
        self._tell = True  # close() sends CLOSE (not when the other end closed or is gone)
        self.closed = False
        #: Why the stream broke, when it did not end by a CLOSE ("" if it did not).
        self.lost = ""
        #: Set once the other end has been heard from (a client's open waits on it).
        self.answered = asyncio.Event()

    def __repr__(self) -> str:
        return f"NatsChannel({self.role}, {self.inbox!r} <-> {self.peer!r})"

    # --- setting up ---------------------------------------------------------------

    def grant(self, upto: int, nbytes: int) -> None:
        """Credit to send, as the other end granted it (its opening message's header)."""
        self._credit = min(upto, MAX_WINDOW)
        self._credit_bytes = min(nbytes, MAX_WINDOW_BYTES)

    def preload(self, *frames: bytes) -> None:
        """Frames that came inside the opening message (they carry no sequence number)."""
        self._frames.extend(frames)
        self._unsequenced += len(frames)

    async def subscribe(self) -> None:
        """Subscribe to this end's inbox and start the heartbeat."""
        self._sub = await self._nc.subscribe(self.inbox, cb=self._on_message)
        self._beat = asyncio.create_task(self._heartbeat(), name=f"microstd-beat-{self.inbox}")

    async def send_credit(self) -> None:
        """Send this end's current grant (a server's first one also says where it is)."""
        await self._publish(_CREDIT.pack(CREDIT, self._granted, self._granted_bytes))

    # --- the Channel protocol -----------------------------------------------------

    def try_send(self, frame: bytes) -> bool:
        """Queue one frame for the writer at once if the writer is in use and credit
        allows it (True); False otherwise: `send` it then, which publishes it, or
        waits, or raises. The fast path of a sender that is ahead: no coroutine
        per item."""
        seq = self._seq + 1
        if (
            self._direct
            or seq > self._credit
            or self._sent_bytes >= self._credit_bytes
            or self.closed
            or self.eof
            or len(frame) + _SEQ_SIZE > self._max_payload
        ):
            return False
        self._seq = seq
        self._sent_bytes += len(frame)
        self._out.append(frame)
        kick = self._kick
        if kick is not None:
            self._kick = None
            kick.set_result(None)
        elif self._writer is None:
            self._writer = asyncio.create_task(self._write(), name=f"microstd-out-{self.inbox}")
        return True

    async def send(self, frame: bytes) -> None:
        """Send one frame once credit allows; `ConnectionResetError` once closed."""
        while True:
            if self.closed or self.eof:
                raise ConnectionResetError(f"the stream is closed{self._why}")
            if len(frame) + _SEQ_SIZE > self._max_payload:
                code = 413 if self.role == "client" else 500
                what = "request" if self.role == "client" else "reply"
                raise ServiceError(
                    "",
                    code,
                    f"a {what} item of {len(frame)} bytes is over the NATS server's"
                    f" max_payload ({self._max_payload} bytes)",
                )
            seq = self._seq + 1
            if seq <= self._credit and self._sent_bytes < self._credit_bytes:
                break
            self._credited.clear()
            await self._credited.wait()
        if self._direct:
            # nats-py's flusher writes what was published at the loop's next turn:
            # bytes still pending mean a publish earlier in this turn (or a network
            # that is behind). Several frames that way: a burst, which the writer
            # batches from here on.
            if self._nc.pending_data_size:
                self._burst += 1
                if self._burst > BURST:
                    self._direct = False
            else:
                self._burst = 0
            if self._direct:
                self._seq = seq
                self._sent_bytes += len(frame)
                try:
                    await self._nc.publish(self.peer, frame + seq.to_bytes(8, "big"))
                except Exception as exc:
                    self._gone(f"the NATS connection failed: {type(exc).__name__}")
                    raise ConnectionResetError(f"the stream is broken: {self.lost}") from exc
                return
        self.try_send(frame)  # (credit is there, the writer in use: it queues)

    def poll(self) -> bytes | None:
        """The next frame if one is here and taking it owes the sender no credit;
        None otherwise (then `receive()`, which waits, or grants, or says closed).
        The reader's fast path: no coroutine per item."""
        frames = self._frames
        if not frames or self._unsequenced or self.closed:
            return None
        frame = frames[0]
        taken = self._taken + 1
        taken_bytes = self._taken_bytes + len(frame)
        if (
            self._granted - taken <= WINDOW // 2
            or self._granted_bytes - taken_bytes <= WINDOW_BYTES // 2
        ):
            return None
        frames.popleft()
        self._taken = taken
        self._taken_bytes = taken_bytes
        return frame

    async def receive(self) -> bytes | None:
        """The next frame; None once the channel is closed (by either end) or broke."""
        frames = self._frames
        while not frames:
            if self.closed or self.eof:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self.closed:
            return None
        frame = frames.popleft()
        if self._unsequenced:
            self._unsequenced -= 1
            return frame
        self._taken += 1
        self._taken_bytes += len(frame)
        if (
            self._granted - self._taken <= WINDOW // 2
            or self._granted_bytes - self._taken_bytes <= WINDOW_BYTES // 2
        ) and not self.eof:
            self._granted = self._taken + WINDOW
            self._granted_bytes = self._taken_bytes + WINDOW_BYTES
            await self.send_credit()
        return frame

    async def close(self) -> None:
        """Close this end (idempotent): tell the other end, leave the inbox."""
        if self.closed:
            return
        self.closed = True
        self._frames.clear()
        self._wake()
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            # What was sent goes out before CLOSE (the writer ends once it is out).
            kick = self._kick
            if kick is not None:
                self._kick = None
                kick.set_result(None)
            with contextlib.suppress(Exception):
                await writer
        beat = self._beat
        if beat is not None and beat is not asyncio.current_task():
            beat.cancel()
        if self.peer is not None and self._tell:
            # No reply subject: nobody is to answer that the other end is gone already.
            with contextlib.suppress(Exception):
                await self._nc.publish(self.peer, _CLOSE)
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # --- incoming messages (nats-py's subscription task) --------------------------

    async def _on_message(self, msg: Any) -> None:
        data: bytes = msg.data
        if not data:
            headers = msg.headers
            if headers and headers.get("Status") == _NO_RESPONDERS:
                self._gone(f"the {self._other} is gone (its inbox has no subscriber)")
            return
        self._heard += 1
        kind = data[0]
        if kind < CREDIT or kind == BATCH:
            if len(data) <= _SEQ_SIZE:
                # No room for a frame and its sequence number (b"\x01" read as
                # seq 1, an empty frame, on which the client's stream failed).
                self._gone(f"the {self._other} sent a malformed message", tell=True)
                return
            if kind == BATCH:
                self._on_batch(data)
                return
            seq = int.from_bytes(data[-8:], "big")
            frame = data[:-8]
            if seq != self._expect:
                self._gone(
                    f"frames from the {self._other} were lost (NATS reconnected?)", tell=True
                )
                return
            if seq > self._granted or self._received_bytes >= self._granted_bytes:
                self._gone(f"the {self._other} sent past its credit", tell=True)
                return
            self._expect = seq + 1
            self._received_bytes += len(frame)
            self._frames.append(frame)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == CREDIT:
            if len(data) != _CREDIT.size:
                return
            _, upto, nbytes = _CREDIT.unpack(data)
            if self.peer is None:
                self.peer = msg.reply or None  # a server's first grant: where it is
            upto = min(upto, self._seq + MAX_WINDOW)
            nbytes = min(nbytes, self._sent_bytes + MAX_WINDOW_BYTES)
            if upto > self._credit:
                self._credit = upto
            if nbytes > self._credit_bytes:
                self._credit_bytes = nbytes
            self._credited.set()
            self.answered.set()
        elif kind == CLOSE:
            self.eof = True
            self._tell = False
            self._wake()

    def _on_batch(self, data: bytes) -> None:
        seq = int.from_bytes(data[-8:], "big")
        if seq != self._expect:
            self._gone(f"frames from the {self._other} were lost (NATS reconnected?)", tell=True)
            return
        frames = self._frames
        got = len(frames)
        granted, granted_bytes = self._granted, self._granted_bytes
        received = self._received_bytes
        unpack = _LENGTH.unpack_from
        pos, end = 1, len(data) - 8
        while pos < end:
            (size,) = unpack(data, pos)
            pos += 4
            frame = data[pos : pos + size]
            pos += size
            if pos > end or not frame or frame[0] >= CREDIT:
                self._gone(f"the {self._other} sent a malformed batch", tell=True)
                return
            if seq > granted or received >= granted_bytes:
                self._gone(f"the {self._other} sent past its credit", tell=True)
                return
            seq += 1
            received += size
            frames.append(frame)
        self._expect = seq
        self._received_bytes = received
        waiter = self._waiter
        if len(frames) > got and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _write(self) -> None:
        """Publish the queued frames, all that are queued at once, until closed."""
        loop = asyncio.get_running_loop()
        nc = self._nc
        try:
            while True:
                frames = self._out
                if not frames:
                    if self.closed or self.eof:
                        return
                    kick = self._kick = loop.create_future()
                    await kick
                    continue
                self._out = []
                if self.eof:
                    continue  # the other end is gone: nobody reads them
                if len(frames) == 1:
                    # The sender is not ahead: it publishes directly again, after this
                    # one (whose publish is queued in nats-py before any later one's).
                    self._direct = True
                    self._burst = 0
                seq = self._seq - len(frames) + 1  # the first one's
                for payload in _messages(frames, seq, min(BATCH_BYTES, self._max_payload)):
                    await nc.publish(self.peer, payload)
        except Exception as exc:
            self._gone(f"the NATS connection failed: {type(exc).__name__}")
        finally:
            self._kick = None

    @property
    def _why(self) -> str:
        return f" ({self.lost})" if self.lost else ""

    # --- internals ----------------------------------------------------------------

    @property
    def _other(self) -> str:
        return "server" if self.role == "client" else "client"

    def _gone(self, why: str, *, tell: bool = False) -> None:
        """The stream broke: the other end is unreachable or its frames cannot be
        trusted (`tell`: it may still be listening; `close()` tells it)."""
        if not self.eof:
            self._tell = tell
            self.lost = why
            self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._credited.set()
        self.answered.set()

    async def _publish(self, payload: bytes) -> None:
        if self.peer is None or self.closed:
            return
        try:
            await self._nc.publish(self.peer, payload, self.inbox)
        except Exception as exc:
            self._gone(f"the NATS connection failed: {type(exc).__name__}")

    async def _heartbeat(self) -> None:
        silent = 0.0
        heard = self._heard
        while not (self.closed or self.eof):
            await asyncio.sleep(HEARTBEAT)
            if self._heard != heard or self.peer is None:
                heard = self._heard
                silent = 0.0
            else:
                silent += HEARTBEAT
                if silent >= SILENCE:
                    # (Told, in case it was only frozen: it stops when it thaws.)
                    self._gone(f"no word from the {self._other} for {SILENCE:g}s", tell=True)
                    return
            await self._publish(_PING)


def _messages(frames: list[bytes], seq: int, limit: int) -> list[bytes]:
    """The NATS messages carrying `frames` (the first numbered `seq`): a frame
    alone (type byte, payload, sequence number), or several in a BATCH of at most
    `limit` bytes."""
    out = []
    i, n = 0, len(frames)
    pack = _LENGTH.pack
    while i < n:
        frame = frames[i]
        if i + 1 == n or len(frame) + len(frames[i + 1]) + 17 > limit:
            out.append(frame + (seq + i).to_bytes(8, "big"))
            i += 1
            continue
        parts = [_BATCH]
        total = 9  # the type byte and the sequence number
        first = i
        while i < n:
            frame = frames[i]
            total += 4 + len(frame)
            if total > limit and i > first:
                break
            parts.append(pack(len(frame)))
            parts.append(frame)
            i += 1
        parts.append((seq + first).to_bytes(8, "big"))
        out.append(b"".join(parts))
    return out
