"""The client side of a streaming call: `Client.stream` and client-streaming `Client.call`.

    async with client.stream("prices", "Prices.Watch", {"symbol": "X"}) as replies:
        async for price in replies:        # each reply as it arrives
            ...

The body is one request (server streaming) or an async iterable of requests
(client and bidi streaming), sent by a task of its own as the server takes
them. Replies are read as the caller iterates, so a slow reader slows the
server's handler (backpressure) and memory stays bounded on both sides.

A node that refuses the stream before its handler ran (shutting down, busy)
or cannot be connected to is retried on another, as unary calls are; once
requests are consumed or replies arrived, never. Leaving the iteration early
(`break`, an exception, `aclose()`) closes the channel, which cancels the
handler on the server. Past the deadline the iteration raises
`DeadlineExceeded`; an error the server sends mid-stream raises `ServiceError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from microstd import codec as codecs
from microstd.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MicrostdError,
    ServiceError,
)
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.rpc.context import TIMEOUT_HEADER, current_context
from microstd.rpc.convert import build
from microstd.rpc.deadline import Deadline
from microstd.rpc.frames import DATA, END, END_FRAME, ERROR, REFUSED, Channel
from microstd.rpc.server import local_server

if TYPE_CHECKING:
    from microstd.registry import Node
    from microstd.rpc.client import Call, Client

__all__ = ["Stream", "is_stream_body"]

#: Tracing switch (`microstd.observe`): one attribute read per stream when off.
_observe = _observe_state.state

_DATA = bytes([DATA])
#: Requests sent before letting the event loop run others (as the server's streams do).
_FAIRNESS = 256
#: Bodies that are data, never a stream of requests (checked first: the unary hot path).
_PLAIN = frozenset({dict, list, tuple, str, bytes, int, float, bool, type(None)})


def is_stream_body(body: object) -> bool:
    """Whether a call's body is a stream of requests (an async iterable)."""
    return type(body) not in _PLAIN and hasattr(body, "__aiter__")


class Stream:
    """An open streaming call: iterate it for the replies; `aclose()` cancels it.

    Nothing is sent until the first iteration. Also an async context manager,
    which closes the stream on exit.
    """

    def __init__(self, client: Client, call: Call, response_type: type[Any] | None) -> None:
        self.service = call.service
        self.endpoint = call.endpoint
        if client.middleware:
            replies = _chained(client, call, response_type)
        else:
            replies = _replies(client, call, response_type)  # no chain: no layer per item
        if _observe.tracer is not None:  # a CLIENT span around the stream (microstd.observe)
            replies = _observed.traced_stream(replies, call, None)
        self._replies = replies

    def __repr__(self) -> str:
        return f"Stream({self.service!r}, {self.endpoint!r})"

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        # The generator's own awaitable, not a coroutine around it: one layer less per item.
        return self._replies.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the stream; the server's handler is cancelled if still running."""
        await self._replies.aclose()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _chained(client: Client, call: Call, response_type: type[Any] | None) -> Any:
    """The replies of a stream opened through the client's middleware.

    The chain runs at the first iteration (nothing is sent before, as without
    middleware); for a stream (`call.stream`), `call_next(call)` returns the
    replies' async iterator, which a middleware may return as is, wrap, or
    replace. Leaving the iteration closes what the chain returned.
    """
    from microstd.rpc.client import CallNext, _wrap

    async def innermost(c: Call) -> object:
        return _replies(client, c, response_type)

    chain: CallNext = innermost
    for mw in reversed(client.middleware):
        chain = _wrap(mw, chain)
    replies: Any = await chain(call)
    try:
        async for item in replies:
            yield item
    finally:
        close = getattr(replies, "aclose", None)
        if close is not None:
            await close()


async def call_streaming(client: Client, call: Call) -> object:
    """A client-streaming call: the requests go out, the one reply comes back."""
    replies = _replies(client, call, None)
    try:
        reply: object = None
        count = 0
        async for item in replies:
            reply = item
            count += 1
        if count != 1:
            raise ServiceError(
                call.service,
                502,
                f"{call.endpoint} answered {count} replies to a call expecting one"
                " (a streaming endpoint: use Client.stream)",
            )
        return reply
    finally:
        await replies.aclose()


async def _replies(client: Client, call: Call, response_type: type[Any] | None) -> Any:
    """The stream's replies, as an async generator (its `finally` closes the channel)."""
    from microstd.rpc.client import past_deadline

    service, endpoint = call.service, call.endpoint
    ctx = current_context()
    deadline: float | None = None
    if call.timeout is not None:
        deadline = time.monotonic() + call.timeout
    if ctx is not None and ctx.deadline is not None:
        deadline = ctx.deadline if deadline is None else min(deadline, ctx.deadline)
    headers = client._headers(call, ctx)
    codec = client.codec
    body = call.body
    loads = codec.loads
    streaming = is_stream_body(body)
    first = None if streaming else _DATA + codec.dumps(body)  # encode errors raise here

    avoid: set[str] = set()
    refusals = 0
    while True:
        channel, node = await _open(client, call, headers, deadline, first, avoid)
        sender: asyncio.Task[None] | None = None
        failed: list[BaseException] = []
        if streaming:
            sender = asyncio.create_task(_send_all(channel, body, codec, failed))
        try:
            frame = await _receive(channel, deadline, call)
            if (
                frame is not None
                and frame[0] == REFUSED
                and first is not None  # the one request can be sent again
                and refusals < client.retries
            ):
                # Refused before its handler ran: another node may take it.
                refusals += 1
                avoid.add(node.id)
                continue  # (the finally below closes this channel)
            receive = channel.receive
            # Over a WebSocket, aiohttp's receive directly: one coroutine less per item.
            raw = getattr(channel, "raw_receive", None) if deadline is None else None
            binary = getattr(channel, "binary", None)
            # A channel that hands out a frame already here without a coroutine (NATS).
            poll = getattr(channel, "poll", None)
            while True:
                if frame is None:
                    if failed:
                        raise failed[0]
                    too_big = getattr(channel, "too_big", None)
                    if too_big == "theirs":
                        detail = "a request item is larger than the server accepts (max_body)"
                        raise ServiceError(service, 413, detail)
                    if too_big == "ours":
                        detail = f"a reply item is larger than {client.max_frame} bytes"
                        raise ServiceError(service, 502, detail)
                    why = getattr(channel, "lost", "") or (
                        "the server stopped or the connection broke"
                    )
                    raise ConnectionFailed(
                        f"{service} {endpoint}: the stream from {node.address} ended without"
                        f" its end ({why})"
                    )
                kind = frame[0]
                if kind == DATA:
                    try:
                        item = loads(frame[1:])
                    except MicrostdError as exc:
                        raise ServiceError(service, 502, f"undecodable stream item: {exc}") from exc
                    if response_type is not None:
                        item = build(response_type, item, service)
                    yield item
                elif kind == END:
                    return
                elif kind in (ERROR, REFUSED):
                    raise past_deadline(_error(codec, frame, service), deadline)
                if poll is not None and (frame := poll()) is not None:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineExceeded(
                            f"{service} {endpoint}: the stream ran past its deadline"
                        )
                elif raw is not None:
                    msg = await raw()
                    if msg.type is binary:
                        frame = msg.data
                    else:
                        channel.ended(msg)  # type: ignore[attr-defined]
                        frame = None
                elif deadline is None:
                    frame = await receive()  # no deadline: nothing to check per item
                else:
                    frame = await _receive(channel, deadline, call)
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            with contextlib.suppress(Exception):
                await channel.close()


async def _open(
    client: Client,
    call: Call,
    headers: dict[str, str],
    deadline: float | None,
    first: bytes | None,
    avoid: set[str],
) -> tuple[Channel, Node]:
    """Connect to a node (and send the one request, if it is one); retried on
    another node when that fails."""
    if client._nats is not None:
        from microstd.rpc.nats_streams import open_stream

        return await open_stream(client, call, headers, deadline, first)
    service = call.service
    last: BaseException | None = None
    scope = Deadline(deadline) if deadline is not None else contextlib.nullcontext()
    try:
        with scope:
            for attempt in range(client.retries + 1):
                nodes = await client._nodes(service, refresh=attempt > 0)
                node = client._pick(service, nodes, avoid)
                try:
                    channel = await _connect(client, node, call, headers, deadline)
                except (OSError, _connect_errors()) as exc:
                    client._mark_down(node)
                    last = ConnectionFailed(f"{service}: cannot open a stream to {node.address}")
                    last.__cause__ = exc
                else:
                    if first is None:
                        return channel, node  # a stream of requests: no first frame to check
                    try:
                        await channel.send(first)
                        await channel.send(END_FRAME)
                        return channel, node
                    except ConnectionError as exc:
                        await channel.close()
                        last = ConnectionFailed(f"{service}: the stream to {node.address} broke")
                        last.__cause__ = exc
                avoid.add(node.id)
                if attempt < client.retries:
                    pause = client.backoff * (2**attempt) * (0.5 + random.random() / 2)
                    await asyncio.sleep(pause)
    except TimeoutError:
        if isinstance(scope, Deadline) and scope.expired:
            detail = f"{service} {call.endpoint}: no stream within the timeout"
            raise DeadlineExceeded(detail) from None
        raise
    assert last is not None
    raise last


async def _connect(
    client: Client, node: Node, call: Call, headers: dict[str, str], deadline: float | None
) -> Channel:
    if deadline is not None:
        headers[TIMEOUT_HEADER] = f"{max(deadline - time.monotonic(), 0.0):.6f}"
    if client.local and client.registry.embedded:
        server = local_server(node.id)
        if server is not None:
            ctype = client.codec.content_type
            return server.open_stream(call.endpoint, ctype, ctype, headers)
    return await client._websocket(node, call.endpoint, headers)


def _connect_errors() -> type[BaseException]:
    import aiohttp

    return aiohttp.ClientError


async def _receive(channel: Channel, deadline: float | None, call: Call) -> bytes | None:
    if deadline is None:
        return await channel.receive()
    # Checked first: a receive that finds a frame already buffered does not
    # suspend, so a Deadline alone would never fire while replies are queued.
    if time.monotonic() >= deadline:
        raise DeadlineExceeded(f"{call.service} {call.endpoint}: the stream ran past its deadline")
    scope = Deadline(deadline)
    try:
        with scope:
            return await channel.receive()
    except TimeoutError:
        if not scope.expired:
            raise
        raise DeadlineExceeded(
            f"{call.service} {call.endpoint}: the stream ran past its deadline"
        ) from None


async def _send_all(
    channel: Channel, requests: Any, codec: codecs.Codec, failed: list[BaseException]
) -> None:
    """Send every request, then END; on a failure of the caller's iterator (or an
    unencodable request) record it and close the channel, which ends the stream."""
    iterator: AsyncIterator[Any] = requests.__aiter__()
    send = channel.send
    try_send = getattr(channel, "try_send", None)  # (as the server's replies)
    sent = 0
    try:
        async for item in iterator:
            frame = _DATA + codec.dumps(item)
            if try_send is None or not try_send(frame):
                await send(frame)
            sent += 1
            if not sent % _FAIRNESS:
                await asyncio.sleep(0)  # sends that fit the buffers do not suspend
        await send(END_FRAME)
    except ConnectionError:
        pass  # the server ended the stream: its last frame says how
    except Exception as exc:
        failed.append(exc)
        await channel.close()
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def _error(codec: codecs.Codec, frame: bytes, service: str) -> ServiceError:
    try:
        data = codec.loads(frame[1:])
    except MicrostdError:
        data = None
    if isinstance(data, dict) and "code" in data:
        return ServiceError.from_dict(data)
    return ServiceError(service, 502, "a malformed error frame ended the stream")
