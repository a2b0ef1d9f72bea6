"""RPC over NATS request/reply: `Service(..., transport="nats://...")` and
`Client(transport="nats://...")`.

The wire. A call to endpoint `Svc.Method` of service `orders` is a request on
the subject `microstd.rpc.orders.$.Svc.Method` (the `$` token keeps a
dotted service name's subjects apart from another's). Every instance of a
service subscribes to `microstd.rpc.<service>.$.>` in the queue group named
after the service, so NATS hands each call to one of them: load spreading and
failover with no ports and no registry look-up. The request's payload is the
encoded body and its headers carry what HTTP headers carry (`X-Request-Id`,
`Microstd-Timeout`, `Microstd-Caller`, `Microstd-Meta-*`; `Content-Type` and
`Accept` only when not msgpack, the default on this transport). A reply is the
encoded result with no headers; an error reply has `Microstd-Error: <code>`
(and `Microstd-Not-Started: 1` when the handler never ran) and the body
`{"id", "code", "detail", "status"}`.

The connection is the engine's (`microstd._engines.nats`: timeouts,
reconnection without limit, credentials redacted), shared per URL and event
loop. A call nobody answers ("no responders": no instance subscribed) raises
`NotFound`, as a service missing from the registry does over HTTP; a refused
call (shutting down, busy) is retried as over HTTP. Streaming calls are not
carried over NATS: `Client.stream` on a NATS client raises `NotSupported`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from microstd.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MicrostdError,
    NotFound,
)
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.rpc.context import (
    ERROR_HEADER,
    NOT_STARTED_HEADER,
    TIMEOUT_HEADER,
    current_context,
)
from microstd.rpc.deadline import Deadline

if TYPE_CHECKING:
    from microstd._engines.nats import NatsConnection
    from microstd.client import Call, Client
    from microstd.rpc.server import Reply, Server

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_WAITING",
    "PREFIX",
    "NatsClientTransport",
    "NatsServerTransport",
    "subject_for",
]

log = logging.getLogger("microstd.server")

_observe = _observe_state.state

#: The subject prefix of every RPC call over NATS.
PREFIX = "microstd.rpc"
#: The codec of a call that names none (HTTP's default is JSON; NATS carries msgpack).
DEFAULT_CONTENT_TYPE = "application/msgpack"
#: Calls a server may hold waiting for room in its decode budget; more are refused.
MAX_WAITING = 1024


def subject_for(service: str, endpoint: str) -> str:
    """The NATS subject of a call to `endpoint` of `service`."""
    return f"{PREFIX}.{service}.$.{endpoint}"


async def _connect(url: str) -> NatsConnection:
    from microstd._engines.nats import NatsEndpoint, acquire

    endpoint, rest = NatsEndpoint.from_url(url)
    if rest:
        from microstd.errors import InvalidArgument

        raise InvalidArgument(f"unknown NATS transport options: {', '.join(sorted(rest))}")
    return await acquire(endpoint)


class NatsServerTransport:
    """Serves one `Server`'s endpoints on NATS, in the service's queue group."""

    def __init__(self, server: Server, url: str) -> None:
        self.server = server
        self.url = url
        self._conn: NatsConnection | None = None
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._prefix_len = len(subject_for(server.name, ""))

    @property
    def address(self) -> str:
        """The NATS URL, credentials redacted."""
        return self._conn.endpoint.redacted if self._conn is not None else ""

    async def start(self) -> None:
        """Connect and subscribe; `ConnectionFailed` if NATS cannot be reached."""
        conn = await _connect(self.url)
        name = self.server.name
        try:
            nc = conn.client("subscribe")
            with conn.errors("subscribe"):
                self._sub = await nc.subscribe(
                    f"{PREFIX}.{name}.$.>", queue=name, cb=self._on_request
                )
                await nc.flush(timeout=conn.endpoint.timeouts.request)  # type: ignore[arg-type]
        except BaseException:
            from microstd._engines.nats import release

            await release(conn)
            raise
        self._conn = conn

    async def unsubscribe(self) -> None:
        """Leave the queue group: new calls go to the other instances (idempotent)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def stop(self) -> None:
        """Unsubscribe, end the calls still running (the server drained them first)
        and disconnect."""
        from microstd._engines.nats import release

        await self.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await release(conn)

    async def _on_request(self, msg: Any) -> None:
        # nats-py runs a subscription's callback one message at a time: each call
        # gets a task of its own, so calls run concurrently as over HTTP.
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Any) -> None:
        server = self.server
        headers = msg.headers or {}
        endpoint = msg.subject[self._prefix_len :]
        prepared = server._prepare(
            endpoint,
            headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
            headers.get("Accept"),
            headers,
        )
        if not isinstance(prepared, tuple):
            await self._reply(msg, prepared)
            return
        ctx, handler, in_codec, out_codec = prepared
        body = msg.data
        limits = server.limits
        if len(body) > limits.max_body:
            await self._reply(msg, server._error(server._too_large(), out_codec, ctx.request_id))
            return
        budget = server._budget
        charge = limits.charge(len(body))
        if not budget.try_take(charge):
            if self._waiting >= MAX_WAITING:
                detail = f"{server.name} is busy: {MAX_WAITING} calls waiting"
                refusal = server._error(
                    server.fail(503, detail), out_codec, ctx.request_id, not_started=True
                )
                await self._reply(msg, refusal)
                return
            self._waiting += 1
            try:
                refused = await server._admit(ctx, charge, out_codec)
            finally:
                self._waiting -= 1
            if refused is not None:
                await self._reply(msg, refused)
                return
        try:
            work = server._handle(ctx, handler, in_codec, out_codec, body)
            if _observe.on:
                reply = await _observed.serve(server.name, server.node_id, ctx, headers, work)
            else:
                reply = await work
        finally:
            budget.give(charge)
        await self._reply(msg, reply, in_codec.content_type)

    async def _reply(self, msg: Any, reply: Reply, request_type: str = "") -> None:
        if not msg.reply:
            return  # a publish, not a request: nobody to answer
        headers: dict[str, str] | None = None
        if reply.error:
            headers = {ERROR_HEADER: str(reply.status), "Content-Type": reply.content_type}
            if reply.not_started:
                headers[NOT_STARTED_HEADER] = "1"
        elif reply.content_type != (request_type or DEFAULT_CONTENT_TYPE):
            headers = {"Content-Type": reply.content_type}
        conn = self._conn
        if conn is None:
            return
        try:
            nc = conn.client("reply")
            with conn.errors("reply"):
                await nc.publish(msg.reply, reply.body, headers=headers)
        except MicrostdError as exc:
            # The caller will time out; nothing else can be done with the answer.
            log.warning("%s: could not send a reply over NATS: %s", self.server.name, exc)


class NatsClientTransport:
    """A `Client`'s calls over NATS request/reply (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: NatsConnection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        shown = self._conn.endpoint.redacted if self._conn is not None else "nats://..."
        return f"NatsClientTransport({shown!r})"

    async def connection(self) -> NatsConnection:
        conn = self._conn
        if conn is None:
            async with self._lock:
                if self._conn is None:
                    self._conn = await _connect(self.url)
                conn = self._conn
        return conn

    async def close(self) -> None:
        from microstd._engines.nats import release

        conn, self._conn = self._conn, None
        if conn is not None:
            await release(conn)

    async def invoke(self, client: Client, call: Call) -> object:
        """One call, retried while it is refused before its handler ran."""
        from microstd.client import _decode_error, _NotSent, _Unavailable

        timeout = call.timeout if call.timeout is not None else client.timeout
        deadline = time.monotonic() + timeout
        ctx = current_context()
        if ctx is not None and ctx.deadline is not None and ctx.deadline < deadline:
            deadline = ctx.deadline
        headers = client._headers(call, ctx)
        codec = client.codec
        if codec.content_type == DEFAULT_CONTENT_TYPE:
            del headers["Content-Type"], headers["Accept"]  # the default: not sent
        payload = codec.dumps(call.body)
        subject = subject_for(call.service, call.endpoint)
        scope = Deadline(deadline)
        try:
            with scope:
                for attempt in range(client.retries + 1):
                    try:
                        reply = await self._request(subject, payload, headers, deadline, call)
                        if reply.not_started and reply.status == 503:
                            raise _Unavailable(_decode_error(call.service, reply))
                        return client._decode_reply(call.service, reply, deadline)
                    except (_NotSent, _Unavailable) as exc:
                        if attempt >= client.retries:
                            if isinstance(exc, _Unavailable):
                                raise exc.error from None
                            raise ConnectionFailed(str(exc)) from exc.__cause__
                        pause = client.backoff * (2**attempt) * (0.5 + random.random() / 2)
                        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        except TimeoutError:
            if not scope.expired:
                raise
            raise DeadlineExceeded(
                f"{call.service} {call.endpoint}: no reply within {timeout:g}s"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        deadline: float,
        call: Call,
    ) -> Reply:
        import nats.errors as nerr

        from microstd.client import _NotSent
        from microstd.rpc.server import Reply

        left = deadline - time.monotonic()
        headers[TIMEOUT_HEADER] = f"{max(left, 0.0):.6f}"
        conn = await self.connection()
        try:
            nc = conn.client("request")
        except ConnectionFailed as exc:
            raise _NotSent(str(exc)) from exc  # not sent: nothing is buffered while down
        if _observe.tracer is not None:
            _observed.note_attempt(conn.endpoint.redacted, "nats", False)
        try:
            with conn.errors(f"{call.service} {call.endpoint}"):
                try:
                    # nats-py's own timeout is a backstop: the call's Deadline ends it first.
                    msg = await nc.request(subject, payload, timeout=left + 1.0, headers=headers)
                except nerr.NoRespondersError:
                    raise NotFound(
                        f"service {call.service!r} has no instance serving on NATS at"
                        f" {conn.endpoint.redacted}"
                    ) from None
        except ConnectionFailed as exc:
            if isinstance(
                exc.__cause__, (nerr.ConnectionReconnectingError, nerr.ConnectionClosedError)
            ):
                raise _NotSent(str(exc)) from exc
            raise
        reply_headers = msg.headers
        if not reply_headers:
            return Reply(200, msg.data, headers.get("Accept") or DEFAULT_CONTENT_TYPE, "")
        code = reply_headers.get(ERROR_HEADER)
        ctype = reply_headers.get("Content-Type") or headers.get("Accept") or DEFAULT_CONTENT_TYPE
        if code is None:
            return Reply(200, msg.data, ctype, "")
        try:
            status = int(code)
        except ValueError:
            status = 502
        return Reply(
            status,
            msg.data,
            ctype,
            "",
            error=True,
            not_started=NOT_STARTED_HEADER in reply_headers,
        )
