"""RPC over NATS request/reply: `Service(..., transport="nats://...")` and
`Client(transport="nats://...")`.

The wire. A call to endpoint `Svc.Method` of service `orders` with 2.5 s left
is a request on the subject `microstd.rpc.orders.2500.Svc.Method`: the
service's name as one token (its dots written `~`, so `billing.eu` is
`billing~eu` and no service's subjects overlap another's), the milliseconds
left before the caller's deadline, then the endpoint. Every instance of a
service subscribes to `microstd.rpc.<service>.*.>` in the queue group named
after the service, so NATS hands each call to one of them: load spreading and
failover with no ports and no registry look-up.

The request's payload is the encoded body. Headers carry only what differs
from this transport's defaults, because nats-py builds and parses headers in
Python (a few microseconds each, on both sides): `X-Request-Id` for a call
made from a handler (a first call is known by its reply inbox's unique
token), `Microstd-Caller`, `Microstd-Meta-*`, and `Content-Type` / `Accept`
when not msgpack. A reply is the encoded result with no headers; an error
reply has `Microstd-Error: <code>` (and `Microstd-Not-Started: 1` when the
handler never ran) and the body `{"id", "code", "detail", "status"}`.

The connection is the engine's (`microstd._engines.nats`: timeouts,
reconnection without limit, credentials redacted), shared per URL and event
loop. A call nobody answers ("no responders": no instance subscribed) raises
`NotFound`, as a service missing from the registry does over HTTP; a refused
call (shutting down, busy) is retried as over HTTP. Streaming calls go over
NATS too: `rpc/nats_streams.py` opens them, `rpc/nats_channel.py` carries
their frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from microstd import codec as codecs
from microstd.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MicrostdError,
    NotFound,
)
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.rpc.context import (
    CALLER_HEADER,
    ERROR_HEADER,
    MAX_REQUEST_ID,
    META_PREFIX,
    NOT_STARTED_HEADER,
    REQUEST_ID_HEADER,
    Context,
    new_request_id,
)
from microstd.rpc.context import _current as _context_var
from microstd.rpc.limits import AMPLIFICATION

if TYPE_CHECKING:
    from microstd._engines.nats import NatsConnection
    from microstd.rpc.client import Call, Client
    from microstd.rpc.nats_streams import NatsStreamListener
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
_current_context = _context_var
_monotonic = time.monotonic
#: The headers of a call that came without any (shared, never written to).
_NO_HEADERS: dict[str, str] = {}

#: The subject prefix of every RPC call over NATS.
PREFIX = "microstd.rpc"
#: The codec of a call that names none (HTTP's default is JSON; NATS carries msgpack).
DEFAULT_CONTENT_TYPE = "application/msgpack"
#: Services whose subject prefix a client keeps (past it, they are made afresh).
_MAX_PREFIXES = 1024
#: Calls a server may hold waiting for room in its decode budget; more are refused.
MAX_WAITING = 1024


def service_token(service: str) -> str:
    """A service's name as one subject token (service names never hold `~`)."""
    return service.replace(".", "~")


def subject_for(service: str, endpoint: str, timeout: float) -> str:
    """The NATS subject of a call to `endpoint` of `service` with `timeout` seconds left."""
    return f"{PREFIX}.{service_token(service)}.{max(int(timeout * 1000), 0)}.{endpoint}"


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
        #: The calls being served, by `id()` of their message.
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start()
        self._waiting = 0
        self._streams: NatsStreamListener | None = None
        self._prefix_len = len(f"{PREFIX}.{service_token(server.name)}.")

    @property
    def address(self) -> str:
        """The NATS URL, credentials redacted."""
        return self._conn.endpoint.redacted if self._conn is not None else ""

    async def start(self) -> None:
        """Connect and subscribe; `ConnectionFailed` if NATS cannot be reached."""
        self._loop = asyncio.get_running_loop()
        conn = await _connect(self.url)
        name = self.server.name
        try:
            nc = conn.client("subscribe")
            with conn.errors("subscribe"):
                self._sub = await nc.subscribe(
                    f"{PREFIX}.{service_token(name)}.*.>", queue=name, cb=self._on_request
                )
                self._streams = await _listen_for_streams(self.server, conn)
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
        if self._streams is not None:
            await self._streams.unsubscribe()

    async def stop(self) -> None:
        """Unsubscribe, end the calls still running (the server drained them first)
        and disconnect."""
        from microstd._engines.nats import release

        await self.unsubscribe()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        streams, self._streams = self._streams, None
        if streams is not None:
            await streams.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            await release(conn)

    async def _on_request(self, msg: Any) -> None:
        # nats-py runs a subscription's callback one message at a time: each call
        # gets a task of its own, so calls run concurrently as over HTTP. The task
        # leaves `_tasks` itself as it ends (a done callback would cost every call
        # one more trip through the event loop).
        self._tasks[id(msg)] = self._loop.create_task(self._serve(msg))

    async def _serve(self, msg: Any) -> None:
        """Serve one call (in a task of its own): context and admission, the handler,
        the reply."""
        try:
            server = self.server
            limits = server._limits
            headers = msg.headers
            reply_to = msg.reply
            millis, _, endpoint = msg.subject[self._prefix_len :].partition(".")
            timeout = int(millis) / 1000 if millis.isdigit() else None
            if headers is None:
                # The common case: a first call, msgpack both ways, no metadata. The
                # subject and the reply inbox say all there is: no headers to read.
                max_timeout = limits.max_timeout
                seconds = max_timeout if timeout is None or timeout > max_timeout else timeout
                # A call without a request id is known by its reply inbox's unique token.
                rid = reply_to.rpartition(".")[2] if reply_to else ""
                # (valid_request_id, inlined: every call)
                if not (
                    rid
                    and len(rid) <= MAX_REQUEST_ID
                    and rid.isascii()
                    and rid.isprintable()
                    and " " not in rid
                ):
                    rid = new_request_id()
                ctx = Context._make(server.name, endpoint, rid, "", _monotonic() + seconds, {})
                in_codec = out_codec = codecs.get(DEFAULT_CONTENT_TYPE)
                prepared = server._route(ctx, in_codec, out_codec)
                headers = _NO_HEADERS
            else:
                if REQUEST_ID_HEADER not in headers and reply_to:
                    headers[REQUEST_ID_HEADER] = reply_to.rpartition(".")[2]
                prepared = server._prepare(
                    endpoint,
                    headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
                    headers.get("Accept"),
                    headers,
                    timeout=timeout,
                )
            if not isinstance(prepared, tuple):
                await self._reply(msg, prepared)
                return
            ctx, handler, in_codec, out_codec = prepared
            body = msg.data
            if len(body) > limits.max_body:
                await self._reply(
                    msg, server._error(server._too_large(), out_codec, ctx.request_id)
                )
                return
            budget = server._budget
            charge = (len(body) + 64) * AMPLIFICATION  # Limits.charge, inlined: every call
            if charge > budget.capacity:
                charge = budget.capacity
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
            if not reply_to:
                return  # a publish, not a request: nobody to answer
            conn = self._conn
            if reply.error or reply.content_type != in_codec.content_type or conn is None:
                await self._reply(msg, reply, in_codec.content_type)
            else:
                try:  # the common case: a reply with no headers (_publish, inlined)
                    nc = conn.nc
                    if nc is None or not nc.is_connected:
                        nc = conn.client("reply")  # raises what the connection's state means
                    await nc.publish(reply_to, reply.body)
                except Exception as exc:
                    self._not_sent(conn, exc)
        finally:
            self._tasks.pop(id(msg), None)

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
        await self._publish(msg.reply, reply.body, headers)

    async def _publish(self, subject: str, body: bytes, headers: dict[str, str] | None) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.client("reply").publish(subject, body, headers=headers)
        except Exception as exc:
            self._not_sent(conn, exc)

    def _not_sent(self, conn: NatsConnection, exc: Exception) -> None:
        """Report a reply that could not be sent (`exc`, as the engine maps it)."""
        try:
            with conn.errors("reply"):
                raise exc
        except MicrostdError as mapped:
            # The caller will time out; nothing else can be done with the answer.
            log.warning("%s: could not send a reply over NATS: %s", self.server.name, mapped)


async def _listen_for_streams(server: Server, conn: NatsConnection) -> NatsStreamListener:
    """Take the server's stream openings too (`rpc/nats_streams.py`)."""
    from microstd.rpc.nats_streams import NatsStreamListener

    listener = NatsStreamListener(server, conn)
    await listener.start()
    return listener


class NatsClientTransport:
    """A `Client`'s calls over NATS request/reply (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: NatsConnection | None = None
        self._lock = asyncio.Lock()
        self._prefixes: dict[str, str] = {}

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
        return await self.call(
            client, call.service, call.endpoint, call.body, call.timeout, call.metadata, call
        )

    async def call(
        self,
        client: Client,
        service: str,
        endpoint: str,
        body: object,
        timeout: float | None,
        metadata: Mapping[str, str] | None,
        call: Call | None = None,
    ) -> object:
        """`invoke` for a call no middleware sees: its `Call` is made only if needed."""
        if timeout is None:
            timeout = client.timeout
        now = _monotonic()
        deadline = now + timeout
        ctx = _current_context.get()
        if ctx is not None and ctx.deadline is not None and ctx.deadline < deadline:
            deadline = ctx.deadline
        codec = client._codec
        if (
            ctx is None
            and not client.name
            and not metadata
            and codec.content_type == DEFAULT_CONTENT_TYPE
            and _observe.tracer is None
        ):
            headers = None  # nothing differs from the defaults: the common case
        else:
            headers = self._headers(client, metadata, ctx)
        payload = codec.dumps(body)
        # The first attempt, inline: the common case is one attempt and a reply
        # in the codec asked for, with no headers.
        left = deadline - now
        conn = self._conn
        nc = conn.nc if conn is not None else None
        failure: Exception | None = None  # the first attempt's, when it may be retried
        if left > 0 and nc is not None and nc.is_connected and _observe.tracer is None:
            try:
                prefix = self._prefixes.get(service) or self._prefix(service)
                msg = await nc.request(
                    f"{prefix}{int(left * 1000)}.{endpoint}", payload, timeout=left, headers=headers
                )
            except Exception as exc:
                failure = self._unsent(conn, exc, service, endpoint, left)  # type: ignore[arg-type]
            else:
                if not msg.headers:
                    try:
                        return codec.loads(msg.data)
                    except MicrostdError:
                        pass  # a ServiceError 502, made the slow way
                reply = self._reply_of(msg, codec.content_type)
                if not (reply.not_started and reply.status == 503):
                    return client._decode_reply(service, reply, deadline)
                from microstd.rpc.client import _decode_error, _Unavailable

                failure = _Unavailable(_decode_error(service, reply))
        if call is None:
            from microstd.rpc.client import Call

            call = Call(service, endpoint, body, dict(metadata) if metadata else {}, timeout)
        return await self._attempts(client, call, payload, headers, deadline, timeout, failure)

    async def _attempts(
        self,
        client: Client,
        call: Call,
        payload: bytes,
        headers: dict[str, str] | None,
        deadline: float,
        timeout: float,
        failure: Exception | None = None,
    ) -> object:
        """`call`'s attempts, the general way: connecting first, retrying while the
        call is refused before its handler ran. `failure`: the first attempt's, made
        already (a retryable one: not sent, or refused unstarted)."""
        from microstd.rpc.client import _decode_error, _NotSent, _Unavailable

        attempt = 0
        while True:
            if failure is None:
                try:
                    reply = await self._request(payload, headers, deadline, call, client)
                    if reply.not_started and reply.status == 503:
                        raise _Unavailable(_decode_error(call.service, reply))
                    return client._decode_reply(call.service, reply, deadline)
                except (_NotSent, _Unavailable) as exc:
                    failure = exc
            if attempt >= client.retries:
                if isinstance(failure, _Unavailable):
                    raise failure.error from None
                raise ConnectionFailed(str(failure)) from failure.__cause__
            if _observe.tracer is not None:
                _observed.note_retry(attempt, "nats", failure)
            pause = client.backoff * (2**attempt) * (0.5 + random.random() / 2)
            if time.monotonic() + pause >= deadline:
                break
            await asyncio.sleep(pause)
            attempt += 1
            failure = None
        raise DeadlineExceeded(f"{call.service} {call.endpoint}: no reply within {timeout:g}s")

    def _prefix(self, service: str) -> str:
        """`subject_for`'s part before the milliseconds, made once per service."""
        prefix = self._prefixes.get(service)
        if prefix is None:
            if len(self._prefixes) >= _MAX_PREFIXES:
                self._prefixes.clear()
            prefix = self._prefixes[service] = f"{PREFIX}.{service_token(service)}."
        return prefix

    @staticmethod
    def _headers(
        client: Client, metadata: Mapping[str, str] | None, ctx: Any
    ) -> dict[str, str] | None:
        """What travels as headers: only what differs from this transport's defaults,
        since nats-py builds and parses headers in Python (a few microseconds each)."""
        headers: dict[str, str] = {}
        if ctx is not None:
            headers[REQUEST_ID_HEADER] = ctx.request_id  # else: the reply inbox's token
        caller = client.name or (ctx.service if ctx is not None else "")
        if caller:
            headers[CALLER_HEADER] = caller
        for key, value in (metadata or {}).items():
            headers[META_PREFIX + key] = str(value)
        ctype = client.codec.content_type
        if ctype != DEFAULT_CONTENT_TYPE:
            headers["Content-Type"] = headers["Accept"] = ctype
        if _observe.tracer is not None:
            _observed.inject(headers)
        return headers or None

    async def _request(
        self,
        payload: bytes,
        headers: dict[str, str] | None,
        deadline: float,
        call: Call,
        client: Client,
    ) -> Reply:
        from microstd.rpc.client import _NotSent

        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{call.service} {call.endpoint}: the deadline passed")
        subject = subject_for(call.service, call.endpoint, left)
        conn = self._conn or await self.connection()
        try:
            nc = conn.client("request")
        except ConnectionFailed as exc:
            raise _NotSent(str(exc)) from exc  # not sent: nothing is buffered while down
        if _observe.tracer is not None:
            _observed.note_attempt(conn.endpoint.redacted, "nats", False)
        try:
            # The request's own timeout is the call's deadline (no Deadline of ours:
            # nats-py arms one timer per request anyway).
            msg = await nc.request(subject, payload, timeout=left, headers=headers)
        except Exception as exc:
            self._failed(conn, exc, call.service, call.endpoint, left)
        return self._reply_of(msg, client._codec.content_type)

    @staticmethod
    def _reply_of(msg: Any, accept: str) -> Reply:
        """A reply message as a `Reply` (`accept`: the codec the call asked for)."""
        from microstd.rpc.server import Reply

        reply_headers = msg.headers
        if not reply_headers:
            return Reply(200, msg.data, accept, "")
        code = reply_headers.get(ERROR_HEADER)
        ctype = reply_headers.get("Content-Type") or accept
        if code is None:
            return Reply(200, msg.data, ctype, "")
        try:
            status = int(code)
        except ValueError:
            status = 502
        not_started = NOT_STARTED_HEADER in reply_headers
        return Reply(status, msg.data, ctype, "", error=True, not_started=not_started)

    @classmethod
    def _unsent(
        cls, conn: NatsConnection, exc: Exception, service: str, endpoint: str, left: float
    ) -> Exception:
        """`_failed`'s `_NotSent` (a request that may be retried) returned; anything
        else it raises."""
        from microstd.rpc.client import _NotSent

        try:
            cls._failed(conn, exc, service, endpoint, left)
        except _NotSent as not_sent:
            return not_sent

    @staticmethod
    def _failed(
        conn: NatsConnection, exc: Exception, service: str, endpoint: str, left: float
    ) -> NoReturn:
        """Raise what a failed request means (only on the error path)."""
        import nats.errors as nerr

        from microstd.rpc.client import _NotSent

        what = f"{service} {endpoint}"
        if isinstance(exc, nerr.NoRespondersError):
            raise NotFound(
                f"service {service!r} has no instance serving on NATS at {conn.endpoint.redacted}"
            ) from None
        if isinstance(exc, (nerr.TimeoutError, asyncio.TimeoutError)):
            raise DeadlineExceeded(f"{what}: no reply within {left:g}s") from None
        if isinstance(exc, (nerr.ConnectionReconnectingError, nerr.ConnectionClosedError)):
            raise _NotSent(f"{what}: NATS at {conn.endpoint.redacted} unreachable") from exc
        with conn.errors(what):
            raise exc
        raise exc  # pragma: no cover - errors() always raises
