"""The server side of a streaming call, whatever carries its frames.

`run_stream` is the streaming counterpart of `Server._handle`: it reads the
call's context from its headers (`Server._prepare`, with `max_stream_timeout`),
then runs two tasks until either ends:

- the *pump* reads frames from the client into a bounded queue (`WINDOW`
  frames): when the handler does not keep up, the pump stops reading, the
  transport's buffers fill, and the client's sends wait (backpressure). When
  the client closes the channel before the reply stream ended, the call was
  cancelled: the handler is cancelled.
- the *work* task runs the handler under the call's deadline (through the
  server middleware) and sends what it yields, one `DATA` frame per item,
  waiting on the channel's flow control; then `END`, or `ERROR` with the
  error's wire form (`Server.failure`: same codes as unary calls).

Items are decoded as the handler takes them, each charged to the server's
decode budget (`Limits.max_decoded`) until the handler asks for the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from microstd.codec.base import Codec
from microstd.errors import EncodeError, MicrostdError, ServiceError
from microstd.rpc.context import Context, reset_context, set_context
from microstd.rpc.convert import _PLAIN, Endpoint, to_plain
from microstd.rpc.deadline import Deadline
from microstd.rpc.frames import DATA, END, END_FRAME, ERROR, REFUSED, Channel

if TYPE_CHECKING:
    from collections.abc import Mapping

    from microstd.rpc.server import Reply, Server

__all__ = ["WINDOW", "run_stream"]

#: Request frames read ahead of the handler, per stream.
WINDOW = 16

_DATA = bytes([DATA])
#: Items a stream sends before it lets the event loop run others (see `_work`).
_FAIRNESS = 256
# Markers the pump queues, told apart by identity (never a frame the pump queues:
# it queues only DATA and END frames).
_STOP = b"\xff stop"  # the client closed before its END
_TOO_BIG = b"\xff too big"  # a request item over max_body


class _Inbox:
    """The client's frames, read ahead by `pump` and decoded as the handler asks."""

    def __init__(self, server: Server, ctx: Context, handler: Endpoint, codec: Codec) -> None:
        self.server = server
        self.ctx = ctx
        self.handler = handler
        self.codec = codec
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(WINDOW)
        self.ended = False  # the client sent END
        self.max_frame = server.limits.max_body + 1

    async def pump(self, channel: Channel) -> None:
        """Read until the channel closes; returns then (the client is gone or done)."""
        queue = self.queue
        while True:
            frame = await channel.receive()
            if frame is None:
                if not self.ended:
                    self.ended = True
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(_STOP)
                return
            if self.ended or not frame:
                continue  # nothing may follow END; ignore rather than fail the call
            if len(frame) > self.max_frame:
                # (Over a WebSocket aiohttp refuses these first; in process, here.)
                self.ended = True
                await queue.put(_TOO_BIG)
                continue
            kind = frame[0]
            if kind == END:
                self.ended = True
                await queue.put(END_FRAME)
            elif kind == DATA:
                await queue.put(frame)

    async def one(self) -> object:
        """The single request of a server-streaming call (None if the client sent none)."""
        frame = await self.queue.get()
        if frame is _TOO_BIG:
            raise self.server._too_large()
        if frame[:1] != _DATA:
            return None
        return self._decode(frame)

    async def items(self) -> AsyncIterator[object]:
        """The requests of a client or bidi stream, each charged to the decode budget
        while the handler holds it (until it asks for the next)."""
        server = self.server
        budget = server._budget
        limits = server.limits
        charge = 0
        try:
            while True:
                frame = await self.queue.get()
                budget.give(charge)
                charge = 0
                if frame[:1] != _DATA:
                    if frame is _TOO_BIG:
                        raise server._too_large()
                    if frame is _STOP:
                        # The client went away mid-stream: the call is being cancelled.
                        raise asyncio.CancelledError
                    return
                charge = limits.charge(len(frame))
                if not budget.try_take(charge) and not await budget.take(
                    charge, limits.queue_timeout
                ):
                    charge = 0
                    raise server.fail(503, f"{server.name} is busy: no room to decode requests")
                yield self.handler.build_item(self._decode(frame), server.name)
        finally:
            budget.give(charge)

    def _decode(self, frame: bytes) -> object:
        try:
            return self.codec.loads(frame[1:])
        except MicrostdError as exc:
            detail = f"undecodable {self.codec.content_type} request item: {exc}"
            raise self.server.fail(400, detail) from exc


async def run_stream(
    server: Server,
    channel: Channel,
    endpoint: str,
    content_type: str | None,
    accept: str | None,
    headers: Mapping[str, str],
) -> None:
    """Serve one streaming call over `channel`, then close it."""
    try:
        prepared = server._prepare(endpoint, content_type, accept, headers, stream=True)
        if isinstance(prepared, tuple):
            await _serve(server, channel, *prepared)
        else:
            await _refuse(channel, prepared)
    finally:
        await channel.close()


async def _refuse(channel: Channel, reply: Reply) -> None:
    kind = REFUSED if reply.not_started else ERROR
    with contextlib.suppress(ConnectionError):
        await channel.send(bytes([kind]) + reply.body)


async def _serve(
    server: Server, channel: Channel, ctx: Context, handler: Endpoint, inc: Codec, out: Codec
) -> None:
    limits = server.limits
    if server._streams >= limits.max_streams:
        detail = f"{server.name} is busy: {limits.max_streams} streams open"
        refusal = server._error(server.fail(503, detail), out, ctx.request_id, not_started=True)
        await _refuse(channel, refusal)
        return
    server._streams += 1
    server._enter()
    inbox = _Inbox(server, ctx, handler, inc)
    token = set_context(ctx)  # the tasks below copy it
    try:
        pump = asyncio.create_task(inbox.pump(channel), name=f"microstd-pump-{ctx.endpoint}")
        work = asyncio.create_task(
            _work(server, channel, ctx, handler, inbox, out), name=f"microstd-{ctx.endpoint}"
        )
    finally:
        reset_context(token)
    try:
        await asyncio.wait({pump, work}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            # The client closed the channel first: it cancelled the call.
            work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    finally:
        pump.cancel()
        work.cancel()
        await asyncio.gather(pump, work, return_exceptions=True)
        server._streams -= 1
        server._leave()


async def _work(
    server: Server,
    channel: Channel,
    ctx: Context,
    handler: Endpoint,
    inbox: _Inbox,
    out: Codec,
) -> None:
    replies: Any = None
    scope = Deadline(ctx.deadline)  # type: ignore[arg-type]  # a server context has one
    scopes = server._scopes
    try:
        with scope:
            scopes.add(scope)  # stop() may abandon it
            try:
                body = await inbox.one() if handler.kind == "server" else inbox.items()
                result = await _chain(server, handler)(ctx, body)
                if handler.kind == "client":
                    await channel.send(_DATA + _encode(server, out, result, ctx))
                else:
                    replies = result
                    send = channel.send
                    # A channel that can queue a frame without waiting (NATS): no
                    # coroutine per item while credit allows.
                    try_send = getattr(channel, "try_send", None)
                    sent = 0
                    dumps = out.dumps
                    async for item in replies:
                        if type(item) in _PLAIN:  # the common case: nothing to convert
                            try:
                                payload = dumps(item)
                            except EncodeError:
                                payload = _encode(server, out, item, ctx)  # raises, worded
                        else:
                            payload = _encode(server, out, item, ctx)
                        frame = _DATA + payload
                        if try_send is None or not try_send(frame):
                            await send(frame)
                        sent += 1
                        if not sent % _FAIRNESS:
                            # A send that fits the socket's buffer does not suspend: a
                            # fast handler would hold the event loop for every other
                            # call until the buffers fill. Let the others run.
                            await asyncio.sleep(0)
            finally:
                scopes.discard(scope)
        await channel.send(END_FRAME)
    except ConnectionError:
        return  # the client is gone: nobody to tell
    except Exception as exc:
        error = server.failure(ctx, exc)
        with contextlib.suppress(ConnectionError):
            await channel.send(bytes([ERROR]) + _encode_error(out, error))
    finally:
        close = getattr(replies, "aclose", None)
        if close is not None:
            # Run the handler's own cleanup (its finally blocks) now, in this task.
            with contextlib.suppress(Exception):
                await close()


def _chain(server: Server, handler: Endpoint) -> Any:
    from microstd.rpc.server import _innermost, _wrap

    call: Any = functools.partial(_innermost, handler, server.name)
    for mw in reversed(server.middleware):
        call = _wrap(mw, call)
    return call


def _encode(server: Server, out: Codec, item: object, ctx: Context) -> bytes:
    try:
        return out.dumps(to_plain(item))
    except EncodeError as exc:
        rid = ctx.request_id
        raise server.fail(500, f"a reply item could not be encoded (request id {rid})") from exc


def _encode_error(out: Codec, error: ServiceError) -> bytes:
    try:
        return out.dumps(error.to_dict())
    except EncodeError:
        wire = {k: v if isinstance(v, int) else str(v) for k, v in error.to_dict().items()}
        return out.dumps(wire)
