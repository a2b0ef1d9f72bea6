"""Streaming calls over NATS: opening a stream, on both sides.

A client opens a stream to endpoint `Svc.Method` of service `orders` by
subscribing to an inbox of its own, then publishing to
`microstd.stream.orders.Svc.Method` (the service's name as one token, as for
unary calls) with that inbox as the reply subject. Every instance of the
service subscribes to `microstd.stream.<service>.>` in the queue group named
after the service, so NATS gives the stream to one of them. The opening
message's headers are a unary call's over HTTP (`X-Request-Id`,
`Microstd-Timeout`, `Microstd-Caller`, `Microstd-Meta-*`, `Content-Type`,
`Accept`) plus `Microstd-Credit: <frames> <bytes>`, the client's receive
window. Its payload is empty for a stream of requests, or, for a
server-streaming call, the one request's DATA frame (END implied): the
request travels with the opening, no round trip first.

The instance subscribes to an inbox of its own and answers with its first
CREDIT, whose reply subject is that inbox; from then on the two ends
exchange frames as `rpc/nats_channel.py` says, and the server runs the
stream as it runs one from a WebSocket (`rpc/streams.py`): deadlines,
cancellation, errors, limits and a graceful stop are the same.

A stream nobody subscribes to (no instance) is answered by NATS with "no
responders": `NotFound`, as for a unary call. An opening nobody answers
within the connection's request timeout raises `ConnectionFailed`; a
REFUSED one (the instance is stopping or busy) is retried by the client as
over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from microstd.errors import ConnectionFailed, DeadlineExceeded, MicrostdError, NotFound
from microstd.registry import Node
from microstd.rpc.context import TIMEOUT_HEADER
from microstd.rpc.deadline import Deadline
from microstd.rpc.frames import END_FRAME
from microstd.rpc.nats_channel import WINDOW, WINDOW_BYTES, NatsChannel

if TYPE_CHECKING:
    from microstd._engines.nats import NatsConnection
    from microstd.rpc.client import Call, Client
    from microstd.rpc.server import Server

__all__ = ["CREDIT_HEADER", "STREAM_PREFIX", "NatsStreamListener", "open_stream", "stream_subject"]

log = logging.getLogger("microstd.server")

#: The subject prefix of every stream opening over NATS.
STREAM_PREFIX = "microstd.stream"
#: The opening message's header giving the client's receive window: "<frames> <bytes>".
CREDIT_HEADER = "Microstd-Credit"


def stream_subject(service: str, endpoint: str) -> str:
    """The subject a client opens a stream to `endpoint` of `service` on."""
    from microstd.rpc.nats import service_token

    return f"{STREAM_PREFIX}.{service_token(service)}.{endpoint}"


def _credit(headers: dict[str, str]) -> tuple[int, int]:
    """The window an opening message grants (the defaults when it says none or nonsense)."""
    raw = headers.get(CREDIT_HEADER, "")
    frames, _, nbytes = raw.partition(" ")
    # (Bounded before int(): "²" is a digit int() refuses, and 5,000 digits
    # are over its limit; either raised in the opening's callback, unanswered.)
    if 0 < len(frames) <= 20 and 0 < len(nbytes) <= 20 and (frames + nbytes).isdecimal():
        upto, size = int(frames), int(nbytes)
        if upto > 0 and size > 0:
            return upto, size
    return WINDOW, WINDOW_BYTES


class NatsStreamListener:
    """Takes the stream openings of one `Server` on NATS, in the service's queue group."""

    def __init__(self, server: Server, conn: NatsConnection) -> None:
        from microstd.rpc.nats import service_token

        self.server = server
        self.conn = conn
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._prefix_len = len(f"{STREAM_PREFIX}.{service_token(server.name)}.")

    async def start(self) -> None:
        """Subscribe (the caller flushes)."""
        name = self.server.name
        nc = self.conn.client("subscribe")
        with self.conn.errors("subscribe"):
            self._sub = await nc.subscribe(stream_subject(name, ">"), queue=name, cb=self._on_open)

    async def unsubscribe(self) -> None:
        """Take no more streams (idempotent); open ones go on."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        with contextlib.suppress(Exception):
            if not self.conn.connected:
                await sub.unsubscribe()  # (no round trip to wait for while it is down)
                return
            # Drained, not dropped: an opening already delivered is still answered
            # (REFUSED while stopping, so the client tries another instance). The
            # drain's round trip is bounded: a stop must not hang on it.
            await asyncio.wait_for(sub.drain(), self.conn.endpoint.timeouts.request or 5.0)

    async def stop(self) -> None:
        """End the streams still open (the server drained them first) and send what
        they said before the connection goes."""
        await self.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            nc = self.conn.client("flush")
            await nc.flush(timeout=self.conn.endpoint.timeouts.request)  # type: ignore[arg-type]

    async def _on_open(self, msg: Any) -> None:
        if not msg.reply:
            return  # not an opening (nobody to answer)
        headers: dict[str, str] = msg.headers or {}
        endpoint = msg.subject[self._prefix_len :]
        try:
            nc = self.conn.client("stream")
        except MicrostdError:
            return  # the connection is down: the client's opening times out
        channel = NatsChannel(nc, nc.new_inbox(), "server")
        channel.peer = msg.reply
        channel.grant(*_credit(headers))
        if msg.data:
            channel.preload(msg.data, END_FRAME)
        try:
            await channel.subscribe()
            await channel.send_credit()  # the answer: says where this end is
        except Exception as exc:
            log.warning("%s: could not open a stream over NATS: %s", self.server.name, exc)
            await channel.close()
            return
        # Each stream gets a task of its own (nats-py runs this callback one
        # message at a time).
        task = asyncio.create_task(self._serve(channel, endpoint, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, channel: NatsChannel, endpoint: str, headers: dict[str, str]) -> None:
        from microstd.rpc.nats import DEFAULT_CONTENT_TYPE

        try:
            await self.server.serve_stream(
                channel,
                endpoint,
                headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
                headers.get("Accept"),
                headers,
            )
        finally:
            await channel.close()


async def open_stream(
    client: Client,
    call: Call,
    headers: dict[str, str],
    deadline: float | None,
    first: bytes | None,
) -> tuple[NatsChannel, Node]:
    """Open a stream over the client's NATS transport (`first`: the one request's
    DATA frame of a server-streaming call, or None for a stream of requests).

    Returns once an instance answered; retries, with backoff, while the
    connection is down. Raises `NotFound` when no instance serves the
    service, `DeadlineExceeded` past `deadline`, `ConnectionFailed` when no
    instance answered in time.
    """
    transport = client._nats
    assert transport is not None
    scope = Deadline(deadline) if deadline is not None else contextlib.nullcontext()
    try:
        with scope:
            conn = await transport.connection()
            last: BaseException | None = None
            for attempt in range(client.retries + 1):
                if attempt:
                    pause = client.backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                    await asyncio.sleep(pause)
                try:
                    nc = conn.client("stream")
                except ConnectionFailed as exc:
                    last = exc  # not sent: nothing is buffered while the connection is down
                    continue
                channel = await _try_open(conn, nc, call, headers, deadline, first)
                if channel is not None:
                    return channel, Node("nats", conn.endpoint.redacted, {"transport": "nats"})
                last = ConnectionFailed(
                    f"{call.service} {call.endpoint}: NATS at {conn.endpoint.redacted}"
                    " failed while opening the stream"
                )
    except TimeoutError:
        if isinstance(scope, Deadline) and scope.expired:
            detail = f"{call.service} {call.endpoint}: no stream within the timeout"
            raise DeadlineExceeded(detail) from None
        raise
    assert last is not None
    raise last


async def _try_open(
    conn: NatsConnection,
    nc: Any,
    call: Call,
    headers: dict[str, str],
    deadline: float | None,
    first: bytes | None,
) -> NatsChannel | None:
    """One opening; the channel once answered, None if the connection failed first."""
    channel = NatsChannel(nc, nc.new_inbox(), "client")
    opening = dict(headers)
    opening[CREDIT_HEADER] = f"{WINDOW} {WINDOW_BYTES}"
    if deadline is not None:
        opening[TIMEOUT_HEADER] = f"{max(deadline - time.monotonic(), 0.0):.6f}"
    try:
        await channel.subscribe()
        await nc.publish(
            stream_subject(call.service, call.endpoint),
            first or b"",
            reply=channel.inbox,
            headers=opening,
        )
    except Exception as exc:
        await channel.close()
        if isinstance(exc, MicrostdError):
            raise
        import nats.errors as nerr

        if isinstance(exc, (nerr.ConnectionClosedError, nerr.OutboundBufferLimitError)):
            return None
        with conn.errors(f"{call.service} {call.endpoint}"):
            raise
        raise  # pragma: no cover - errors() always raises
    wait = conn.endpoint.timeouts.request or 5.0
    try:
        try:
            await asyncio.wait_for(channel.answered.wait(), wait)
        except asyncio.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
            raise ConnectionFailed(
                f"{call.service} {call.endpoint}: no instance answered the stream's opening"
                f" within {wait:g}s (NATS at {conn.endpoint.redacted})"
            ) from None
        if channel.peer is None:
            if channel.lost.startswith("the server is gone"):
                raise NotFound(
                    f"service {call.service!r} has no instance serving streams on NATS at"
                    f" {conn.endpoint.redacted}"
                )
            await channel.close()
            return None  # the connection failed: tried again
    except BaseException:
        await channel.close()
        raise
    return channel
