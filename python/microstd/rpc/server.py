"""The RPC server: endpoints by name, codecs by content type, errors on the wire.

A request is `POST /Service.Method` whose body the codec its `Content-Type`
names decodes (`Accept` picks the reply's codec; the request's by default).
Errors are replies with `Microstd-Error: 1` and the body
`{"id", "code", "detail", "status"}`.

The request path, in order (one place, shared by every transport):
`_prepare` (context, codecs, endpoint: cheap refusals before the body is
read), admission (`Limits.max_decoded`, see `rpc/limits.py`), the body, then
`_handle` (decode, middleware and handler under the call's deadline, encode,
errors to replies). aiohttp calls it for HTTP requests (`_http_call`) and a
`Client` in the same process calls `dispatch` directly, so both paths share
one set of semantics.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from types import CoroutineType
from typing import Any, cast

from microstd import codec as codecs
from microstd.codec.base import Codec
from microstd.errors import (
    EncodeError,
    MicrostdError,
    ServiceError,
    UnknownContentType,
    http_status,
)
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.rpc.admission import Budget
from microstd.rpc.context import (
    ERROR_HEADER,
    NOT_STARTED_HEADER,
    REQUEST_ID_HEADER,
    Context,
)
from microstd.rpc.context import _current as _context_var
from microstd.rpc.convert import _PLAIN, Endpoint, to_plain
from microstd.rpc.deadline import Deadline, resume
from microstd.rpc.frames import Channel, memory_pair
from microstd.rpc.http import HttpTransport
from microstd.rpc.limits import AMPLIFICATION, Limits
from microstd.rpc.nats import NatsServerTransport
from microstd.rpc.pool import HandlerPool
from microstd.rpc.streams import run_stream

__all__ = ["Limits", "Next", "Reply", "Server", "ServerMiddleware", "local_server"]

#: Tracing and metrics switches (`microstd.observe`): one attribute read per request when off.
_observe = _observe_state.state
_monotonic = time.monotonic

log = logging.getLogger("microstd.server")

Next = Callable[[Context, object], Awaitable[object]]
#: `async def mw(ctx, body, call_next) -> result`: wraps every handler call.
ServerMiddleware = Callable[[Context, object, Next], Awaitable[object]]

DEFAULT_CONTENT_TYPE = "application/json"

# Servers running in this process, by node id: a Client resolving a node listed
# here may call the server directly (see Client, "in-process calls").
_LOCAL: dict[str, Server] = {}


def local_server(node_id: str) -> Server | None:
    """The running server in this process for `node_id`, if any (draining included:
    it answers 503 like its HTTP side), when it runs on the calling event loop: a
    server's state belongs to its loop, so a client on another (a `SyncClient`,
    another thread) goes through the network instead."""
    server = _LOCAL.get(node_id)
    if server is not None and server._loop is asyncio.get_running_loop():
        return server
    return None


@dataclass(slots=True)
class Reply:
    """An encoded reply, ready for HTTP or a local caller.

    (Not frozen: one is made per call on each side, and a frozen dataclass's
    __init__ costs five times as much.)
    """

    status: int
    body: bytes
    content_type: str
    request_id: str
    error: bool = False
    #: The handler never ran (shutting down, busy): the caller may retry elsewhere.
    not_started: bool = False

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": self.content_type, REQUEST_ID_HEADER: self.request_id}
        if self.error:
            out[ERROR_HEADER] = "1"
            if self.not_started:
                out[NOT_STARTED_HEADER] = "1"
        return out


#: How much of a request header an error reply may quote.
_QUOTE_CHARS = 64


def quote_header(value: str) -> str:
    """A request header value fit to quote in an error reply: printable ASCII
    only (anything else becomes `?`) and at most `_QUOTE_CHARS` characters, so a
    client cannot make the server echo megabytes or control characters."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in value[:_QUOTE_CHARS])
    return repr(clean + ("..." if len(value) > _QUOTE_CHARS else ""))


def _accept_codec(accept: str | None, fallback: Codec | None) -> Codec | None:
    """The codec for the first known type in `accept`; `fallback` for none or `*/*`."""
    if not accept:
        return fallback
    for part in accept.split(","):
        ctype = part.split(";", 1)[0].strip()
        if not ctype or ctype in {"*/*", "application/*"}:
            return fallback or codecs.get(DEFAULT_CONTENT_TYPE)
        try:
            return codecs.get(ctype)
        except UnknownContentType:
            continue
    return None


class Server:
    """Endpoints of one service, served over HTTP (aiohttp) and to in-process clients.

    `limits` bound what requests may hold (see `microstd.rpc.Limits`);
    `max_body` is a shortcut for `limits.max_body`.
    """

    def __init__(
        self,
        name: str,
        *,
        node_id: str | None = None,
        middleware: Sequence[ServerMiddleware] = (),
        max_body: int | None = None,
        limits: Limits | None = None,
        transport: str | None = None,
    ) -> None:
        self.name = name
        self.node_id = node_id or f"{name.replace('.', '-')}-{uuid.uuid4().hex[:12]}"
        self.endpoints: dict[str, Endpoint] = {}
        self.middleware: list[ServerMiddleware] = list(middleware)
        limits = limits or Limits()
        if max_body is not None:
            limits = replace(limits, max_body=max_body)
        self._limits = limits
        self.pool = HandlerPool(limits.handler_threads, name=f"microstd-{name}")
        self._budget = Budget(limits.max_decoded)
        self.address = ""
        self.accepting = False
        self.ready = False
        #: Set from the moment a stop begins (readiness answers "draining").
        self.draining = False
        self._inflight = 0
        #: Set when the last request in flight ends, while `drain()` waits for that.
        self._idle: asyncio.Event | None = None
        # The deadline scopes of handlers running now: stop() expires them past grace.
        self._scopes: set[Deadline] = set()
        self._abandoned = False
        self._http: HttpTransport | None = None
        #: The NATS URL this server also serves on (`transport=`), or None.
        self.transport_url = _nats_url(transport)
        self._nats: NatsServerTransport | None = None
        self._streams = 0
        #: Tasks the server started and keeps referenced until done (in-process
        #: streams, a NATS unsubscribe).
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: `/health/ready`'s answer: an async function returning (ok, details);
        #: None: ready while `ready` and accepting (`Service` sets its checks here).
        self.readiness: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]] | None = None
        #: Serve `/metrics` (Prometheus text; `Service(metrics=True)` sets it).
        self.metrics_endpoint = False

    def __repr__(self) -> str:
        return f"Server({self.name!r}, node={self.node_id!r}, address={self.address!r})"

    @property
    def limits(self) -> Limits:
        """The server's `Limits`; assigning new ones applies them to later requests."""
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        old, self._limits = self._limits, limits
        self.pool.threads = limits.handler_threads
        budget = self._budget
        budget.capacity = limits.max_decoded
        budget.free += limits.max_decoded - old.max_decoded
        budget.give(0)  # a larger budget may let waiters in

    @property
    def max_body(self) -> int:
        """The largest request body accepted, in bytes (`limits.max_body`)."""
        return self._limits.max_body

    @max_body.setter
    def max_body(self, value: int) -> None:
        self.limits = replace(self._limits, max_body=value)

    def add(self, name: str, fn: Callable[..., Any]) -> None:
        """Serve `fn` as endpoint `name` (`"Service.Method"`)."""
        if not isinstance(name, str) or "." not in name.strip(".") or "/" in name:
            raise ValueError(f"endpoint names look like 'Service.Method', got {name!r}")
        if name in self.endpoints:
            raise ValueError(f"endpoint {name!r} is already registered")
        self.endpoints[name] = Endpoint(name, fn, self.pool)

    @property
    def inflight(self) -> int:
        """Requests being handled right now."""
        return self._inflight

    # --- the request path ---------------------------------------------------------

    def _error(
        self,
        exc: ServiceError,
        out: Codec | None,
        request_id: str,
        *,
        not_started: bool = False,
    ) -> Reply:
        out = out or codecs.get(DEFAULT_CONTENT_TYPE)
        wire = exc.to_dict()
        try:
            body = out.dumps(wire)
        except EncodeError:
            out = codecs.get(DEFAULT_CONTENT_TYPE)
            body = out.dumps({k: v if isinstance(v, int) else str(v) for k, v in wire.items()})
        return Reply(
            exc.code, body, out.content_type, request_id, error=True, not_started=not_started
        )

    def fail(self, code: int, detail: str) -> ServiceError:
        """A `ServiceError` from this service with the reason phrase of `code`."""
        return ServiceError(self.name, code, detail)

    def _prepare(
        self,
        endpoint: str,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str],
        *,
        stream: bool = False,
        timeout: float | None = None,
    ) -> tuple[Context, Endpoint, Codec, Codec] | Reply:
        """The call's context, handler and codecs, or the error reply refusing it
        (before its body is read: nothing here depends on the body). `stream`:
        the call came as a stream (the deadline is then at most `max_stream_timeout`).
        `timeout`: the caller's seconds left when not in the headers (NATS)."""
        limits = self._limits
        ctx = Context.from_headers(
            self.name,
            endpoint,
            headers,
            limits.max_stream_timeout if stream else limits.max_timeout,
            timeout,
        )
        rid = ctx.request_id
        try:
            in_codec = codecs.get(content_type or DEFAULT_CONTENT_TYPE)
        except UnknownContentType:
            detail = f"no codec for Content-Type {quote_header(content_type or '')}"
            return self._error(self.fail(415, detail), _accept_codec(accept, None), rid)
        # A client asking for the codec it sends with (as Client does) needs no parsing.
        out_codec = in_codec if accept == content_type else _accept_codec(accept, in_codec)
        if out_codec is None:
            detail = f"no codec for Accept {quote_header(accept or '')}"
            return self._error(self.fail(406, detail), None, rid)
        return self._route(ctx, in_codec, out_codec, stream)

    def _route(
        self, ctx: Context, in_codec: Codec, out_codec: Codec, stream: bool = False
    ) -> tuple[Context, Endpoint, Codec, Codec] | Reply:
        """`_prepare`'s second half, for a call whose context and codecs are known:
        its handler, or the reply refusing it (a transport that knows the codecs
        without looking them up, as NATS does for msgpack, starts here)."""
        rid = ctx.request_id
        if not self.accepting:
            refusal = self.fail(503, f"{self.name} is shutting down")
            return self._error(refusal, out_codec, rid, not_started=True)
        endpoint = ctx.endpoint
        handler = self.endpoints.get(endpoint)
        if handler is None:
            return self._error(self.fail(404, f"unknown endpoint {endpoint!r}"), out_codec, rid)
        if handler.streams is not stream:
            return self._error(self.fail(400, _mismatch(handler)), out_codec, rid)
        if ctx.deadline - _monotonic() <= 0:  # type: ignore[operator]  # (_left, inlined)
            return self._error(self.fail(504, "deadline exceeded"), out_codec, rid)
        return ctx, handler, in_codec, out_codec

    async def _admit(self, ctx: Context, charge: int, out: Codec) -> Reply | None:
        """Wait in line for `charge` of the decode budget; the error reply if it
        did not come in time (None once admitted)."""
        wait = min(self._limits.queue_timeout, _left(ctx))
        if await self._budget.take(charge, wait):
            return None
        if _left(ctx) <= 0:
            return self._error(self.fail(504, "deadline exceeded"), out, ctx.request_id)
        detail = (
            f"{self.name} is busy: requests in flight hold its decode budget"
            f" ({self._limits.max_decoded} bytes); try again or another node"
        )
        return self._error(self.fail(503, detail), out, ctx.request_id, not_started=True)

    async def dispatch(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str],
    ) -> Reply:
        """Decode, run the handler (through the middleware) and encode the reply.

        The entry for in-process calls; HTTP requests take the same path.
        """
        prepared = self._prepare(endpoint, content_type, accept, headers)
        if type(prepared) is Reply:
            return prepared
        ctx, handler, in_codec, out_codec = prepared  # type: ignore[misc]
        if len(body) > self._limits.max_body:
            # The HTTP side refuses these before reading them; in-process calls end here.
            return self._error(self._too_large(), out_codec, ctx.request_id)
        charge = (len(body) + 64) * AMPLIFICATION  # Limits.charge, inlined: every call
        if charge > self._budget.capacity:
            charge = self._budget.capacity
        if not self._budget.try_take(charge):
            refused = await self._admit(ctx, charge, out_codec)
            if refused is not None:
                return refused
        try:
            work = self._handle(ctx, handler, in_codec, out_codec, body)
            if _observe.on:
                return await _observed.serve(self.name, self.node_id, ctx, headers, work)
            return await work
        finally:
            self._budget.give(charge)

    async def _handle(
        self, ctx: Context, handler: Endpoint, in_codec: Codec, out_codec: Codec, body: bytes
    ) -> Reply:
        """The core of every call, admitted and with its body: decode, run the handler
        (through the middleware, under the call's deadline), encode; errors to replies."""
        rid = ctx.request_id
        self._inflight += 1  # (_enter, inlined: every call)
        token = _context_var.set(ctx)
        try:
            try:
                request = in_codec.loads(body) if body else None
            except MicrostdError as exc:
                raise self.fail(400, f"undecodable {in_codec.content_type} body: {exc}") from exc
            direct = None if self.middleware else handler.direct
            if self.middleware:
                call: Next = functools.partial(_innermost, handler, self.name)
                for mw in reversed(self.middleware):
                    call = _wrap(mw, call)
                work = cast("Coroutine[Any, Any, object]", call(ctx, request))
            elif direct is not None:
                # Nothing to adapt: the handler itself (Endpoint.__call__'s frame saved).
                work = direct(request)  # type: ignore[assignment]
                if type(work) is not CoroutineType:  # an awaitable that is no coroutine
                    work = _awaited(work)
            else:
                work = handler(request, self.name)  # no middleware: no chain to build
            # The handler's first step runs here, with no deadline armed: most answer
            # without ever suspending, and one that does not suspend cannot be stopped
            # anyway (cancelling takes effect at an await). Arming a deadline costs about
            # a microsecond per call (a slot, the task's cancel count, a scope for stop()),
            # so that is done only once the handler is suspended, for the rest of it.
            try:
                waiting = work.send(None)
            except StopIteration as done:
                result = done.value
            else:
                # Past the caller's deadline nobody waits for the answer: stop the work.
                scope = Deadline(ctx.deadline)  # type: ignore[arg-type]  # max_timeout: always one
                scopes = self._scopes
                with scope:
                    scopes.add(scope)  # for stop() to abandon it
                    try:
                        result = await resume(work, waiting)
                    finally:
                        scopes.discard(scope)
            if direct is not None and type(result) not in _PLAIN:
                result = await self._settle(ctx, result)
            try:
                return Reply(200, out_codec.dumps(result), out_codec.content_type, rid)
            except EncodeError as exc:
                log.error(
                    "%s %s: cannot encode reply (request %s): %s", self.name, ctx.endpoint, rid, exc
                )
                raise self.fail(500, f"the reply could not be encoded (request id {rid})") from exc
        except Exception as exc:
            return self._error(self.failure(ctx, exc), out_codec, rid)
        finally:
            _context_var.reset(token)
            self._inflight -= 1  # (_leave, inlined: every call)
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def _settle(self, ctx: Context, result: object) -> object:
        """A direct handler's result that is not plain data, as `Endpoint.__call__`
        would make it: awaited if awaitable (under the call's deadline), then plain."""
        if inspect.isawaitable(result):
            scope = Deadline(ctx.deadline)  # type: ignore[arg-type]  # max_timeout: always one
            with scope:
                self._scopes.add(scope)
                try:
                    result = await result
                finally:
                    self._scopes.discard(scope)
        return to_plain(result)

    def failure(self, ctx: Context, exc: Exception) -> ServiceError:
        """The `ServiceError` a handler's exception answers the call with.

        A `ServiceError` crosses as is (an empty `id` becomes this service's
        name); microstd errors keep their meaning (`errors.http_status`:
        `NotFound` 404, `Conflict` 409, ...); past the call's deadline it is a
        504, after `abandon()` a 503; anything else is logged with its traceback
        here and answered with a 500 naming only the request id.
        """
        if _observe.tracer is not None:
            _observed.note_failure(exc)
        if isinstance(exc, ServiceError):
            code = exc.code
            if not (isinstance(code, int) and 400 <= code <= 599):
                # Not an error status: the caller would not know it failed.
                return ServiceError(exc.id or self.name, 500, exc.detail)
            if exc.id:
                return exc
            return ServiceError(self.name, code, exc.detail, exc.status)
        rid = ctx.request_id
        if isinstance(exc, MicrostdError):
            code = http_status(exc)
            if code != 500:
                if code >= 500:
                    log.warning("%s %s (request %s): %s", self.name, ctx.endpoint, rid, exc)
                return self.fail(code, str(exc))
        elif isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            if _left(ctx) <= 0:
                return self.fail(504, "deadline exceeded")
            if self._abandoned:
                return self.fail(503, f"{self.name} stopped before the call finished ({rid})")
        # The traceback stays in this service's log; the caller sees only the request id.
        log.exception("%s %s failed (request %s)", self.name, ctx.endpoint, rid, exc_info=exc)
        return self.fail(500, f"internal error (request id {rid})")

    def _enter(self) -> None:
        self._inflight += 1

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    def _too_large(self) -> ServiceError:
        return self.fail(413, f"the request body is larger than {self.max_body} bytes")

    # --- streams ------------------------------------------------------------------

    async def serve_stream(
        self,
        channel: Channel,
        endpoint: str,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str],
    ) -> None:
        """Serve one streaming call whose frames `channel` carries (see `rpc/streams.py`)."""
        work = run_stream(self, channel, endpoint, content_type, accept, headers)
        if _observe.tracer is not None:  # a SERVER span around the stream (microstd.observe)
            await _observed.serve_stream(self.name, self.node_id, endpoint, headers, work)
        else:
            await work

    def open_stream(
        self,
        endpoint: str,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str],
    ) -> Channel:
        """A streaming call from this process: the caller's end of an in-memory channel
        whose other end this server serves (the in-process twin of a WebSocket)."""
        mine, theirs = memory_pair()
        task = asyncio.create_task(
            self.serve_stream(theirs, endpoint, content_type, accept, headers),
            name=f"microstd-local-stream-{endpoint}",
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return mine

    @property
    def streams(self) -> int:
        """Streaming calls open right now."""
        return self._streams

    # --- lifecycle ----------------------------------------------------------------

    async def start(self, address: str = "127.0.0.1:0") -> str:
        """Listen on `address` (`host:port`, port 0 picks one); returns the real address."""
        _observe_state.refresh()
        http = HttpTransport(self)
        self.address = await http.start(address)
        self._http = http
        if self.transport_url is not None:
            nats = NatsServerTransport(self, self.transport_url)
            try:
                await nats.start()
            except BaseException:
                self._http = None
                await http.stop()
                raise
            self._nats = nats
        self._idle = None
        self._abandoned = False
        self._loop = asyncio.get_running_loop()
        self.accepting = True
        self.draining = False
        _LOCAL[self.node_id] = self
        return self.address

    def stop_accepting(self) -> None:
        """New requests get 503 (clients retry elsewhere); in-flight ones finish."""
        self.accepting = False
        self.ready = False
        self.draining = True
        if self._nats is not None and self._loop is not None and not self._loop.is_closed():
            # Leave the NATS queue group now, so its other members get the new calls
            # (a call that reaches this one meanwhile gets a 503 and is retried).
            task = self._loop.create_task(self._nats.unsubscribe())
            self._background.add(task)  # (kept referenced until done)
            task.add_done_callback(self._background.discard)

    async def drain(self, grace: float) -> bool:
        """Wait up to `grace` seconds for in-flight requests; True if all finished."""
        if self._loop is None or self._inflight == 0:
            return True
        idle = self._idle
        if idle is None or idle.is_set():
            # Made only now that someone waits: otherwise every call would clear
            # and set an event as the server goes busy and idle.
            idle = self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), max(grace, 0.0))
        except asyncio.TimeoutError:
            log.warning(
                "%s: %d requests still running after %.1fs", self.name, self._inflight, grace
            )
            return False
        return True

    def abandon(self) -> int:
        """Stop the handlers still running: their callers get 503. Returns how many.

        An async handler is cancelled at its next await. A sync handler already
        running on a thread cannot be interrupted: its caller is answered at
        once, and the function finishes on its thread with its result dropped.
        """
        self._abandoned = True
        scopes = list(self._scopes)
        for scope in scopes:
            scope.expire()
        return len(scopes)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, drain in-flight ones, close the listener: within `grace`.

        In-flight requests get all but the last moments of `grace` to finish;
        those still running then are abandoned (`abandon()`: their callers get
        503) and the listener closes, so `stop()` returns within `grace` even
        when a sync handler never returns.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + max(grace, 0.0)
        reserve = min(_CLOSE_WAIT * 2, grace / 4)
        self.stop_accepting()
        if self._nats is not None:
            await self._nats.unsubscribe()  # the queue group's other members take new calls
        if not await self.drain(grace - reserve) and self.abandon():
            # Abandoned handlers reply at their next step: give them a moment.
            await self.drain(max(0.0, min(_CLOSE_WAIT, end - loop.time() - _CLOSE_WAIT)))
        _LOCAL.pop(self.node_id, None)
        self.pool.close()
        http, self._http = self._http, None
        if http is not None:
            await http.stop()
        nats, self._nats = self._nats, None
        if nats is not None:
            await nats.stop()


def _left(ctx: Context) -> float:
    # The server reads every context with max_timeout: each has a deadline.
    return ctx.deadline - time.monotonic()  # type: ignore[operator]


#: Seconds `stop()` keeps for abandoned handlers to reply and for closing connections.
_CLOSE_WAIT = 0.1


def _nats_url(transport: str | None) -> str | None:
    """The NATS URL of a `transport=` option (None: HTTP only)."""
    if transport is None or transport == "http":
        return None
    if not isinstance(transport, str) or not transport.startswith(("nats://", "tls://")):
        from microstd.errors import InvalidArgument

        raise InvalidArgument(
            f"transport is 'http' (the default) or a NATS URL (nats://host:port), got {transport!r}"
        )
    return transport


def _mismatch(handler: Endpoint) -> str:
    if handler.streams:
        return (
            f"{handler.name} is a {handler.kind}-streaming endpoint:"
            " call it with Client.stream (or Client.call with a stream of requests)"
        )
    return f"{handler.name} is a unary endpoint: call it with Client.call"


async def _awaited(aw: Awaitable[object]) -> object:
    return await aw


async def _innermost(handler: Endpoint, service: str, ctx: Context, body: object) -> object:
    return await handler(body, service)


def _wrap(mw: ServerMiddleware, call_next: Next) -> Next:
    async def wrapped(ctx: Context, body: object) -> object:
        return await mw(ctx, body, call_next)

    return wrapped
