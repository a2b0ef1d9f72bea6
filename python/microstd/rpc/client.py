"""`Client`: call a service's endpoint by name, resolved through the registry.

    async with microstd.Client() as client:          # the process's memory://default registry
        reply = await client.call("greeter", "Greeter.Hello", {"name": "a"})

The client looks the service up (caching the answer for `cache_ttl` seconds),
picks a node (round robin or random), and sends `POST /Service.Method` over
one aiohttp session it keeps for its life (pooled keep-alive connections).

Retries, with exponential backoff, happen only when the request certainly did
not run: the connection could not be opened, or the server answered 503 (it
is shutting down and did not start the work). A request that may have reached
a handler is retried only when the call says `idempotent=True`.

Each call has a timeout (`timeout=`, default the client's); the time left
travels with the request, so the server stops working past it, and a call
made inside a handler inherits the smaller of its own timeout and its
caller's. Past the deadline the call raises `DeadlineExceeded`. One
`Deadline` bounds the whole call (lookup, attempts, pauses between them).

In-process calls: when the registry is the embedded one and the chosen node is
served by this process, the client calls the server's dispatch directly,
skipping HTTP but keeping the same encoding, middleware, deadline and error
semantics.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from microstd import _deps
from microstd import codec as codecs
from microstd._lifecycle import AsyncResource
from microstd.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MicrostdError,
    ServiceError,
)
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.registry import Node, Registry
from microstd.registry import open as open_registry
from microstd.rpc.context import (
    CALLER_HEADER,
    ERROR_HEADER,
    META_PREFIX,
    NOT_STARTED_HEADER,
    REQUEST_ID_HEADER,
    TIMEOUT_HEADER,
    Context,
    new_request_id,
)
from microstd.rpc.context import _current as _current_context
from microstd.rpc.convert import build
from microstd.rpc.deadline import Deadline
from microstd.rpc.frames import Channel, WebSocketChannel
from microstd.rpc.server import Reply, _nats_url, local_server
from microstd.rpc.stream_client import Stream, is_stream_body

if TYPE_CHECKING:
    from microstd.rpc.nats import NatsClientTransport

__all__ = ["Call", "CallNext", "Client", "ClientMiddleware"]

DEFAULT_REGISTRY = "memory://default"
#: How far ahead of the client's own timer a server's deadline may fire (two deadline slots).
_SKEW = 0.002
#: Bodies that are data, never a stream of requests: checked first, the unary hot path.
_PLAIN_BODIES = frozenset({dict, list, tuple, str, bytes, int, float, bool, type(None)})
#: Request bodies from this size on are streamed (aiohttp's large-body threshold).
_STREAM_BODY = 1 << 20


@dataclass
class Call:
    """One outgoing call, as client middleware sees (and may change) it."""

    service: str
    endpoint: str
    body: object
    metadata: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    idempotent: bool = False
    #: A `Client.stream` call: middleware's `call_next(call)` returns the replies'
    #: async iterator (which the middleware may wrap), not a reply.
    stream: bool = False


CallNext = Callable[[Call], Awaitable[object]]
#: `async def mw(call, call_next) -> reply`: wraps every call.
ClientMiddleware = Callable[[Call, CallNext], Awaitable[object]]


class _Retryable(Exception):
    """An attempt failed in a way another node may not."""


class _NotSent(_Retryable):
    """The request never reached a server: safe to retry."""


class _MaybeSent(_Retryable):
    """The connection failed after the request may have reached a handler."""


class _Unavailable(_Retryable):
    """The node answered 503: it is shutting down and did not start the work."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(str(error))
        self.error = error


_NOTHING: frozenset[str] = frozenset()

#: Tracing and metrics switches (`microstd.observe`): one attribute read per call when off.
_observe = _observe_state.state
_monotonic = time.monotonic


class Client(AsyncResource):
    """Calls services by name. Close it (or use `async with`) to release connections;
    a closed client raises `Closed`."""

    def __init__(
        self,
        registry: str | Registry | None = None,
        *,
        name: str = "",
        selector: Literal["round_robin", "random"] = "round_robin",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.05,
        content_type: str = "application/msgpack",
        middleware: Sequence[ClientMiddleware] = (),
        cache_ttl: float = 1.0,
        local: bool = True,
        transport: str | None = None,
    ) -> None:
        if selector not in ("round_robin", "random"):
            raise ValueError(f"selector is 'round_robin' or 'random', got {selector!r}")
        if retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("retries and backoff must be >= 0, timeout > 0")
        self._owns_registry = not isinstance(registry, Registry)
        self.registry: Registry = (
            registry
            if isinstance(registry, Registry)
            else open_registry(registry or DEFAULT_REGISTRY)
        )
        self.name = name
        self.selector = selector
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.codec = codecs.get(content_type)  # sets _base_headers
        self.middleware: list[ClientMiddleware] = list(middleware)
        self.cache_ttl = cache_ttl
        self.local = local
        #: The largest stream reply item accepted, in bytes (a server's default
        #: `max_body`); a larger one ends the stream with a 502.
        self.max_frame = 4 * 1024 * 1024
        #: Calls go over NATS request/reply when `transport` is a NATS URL (no
        #: registry look-up: the service's queue group answers); None: HTTP.
        self._nats: NatsClientTransport | None = None
        nats_url = _nats_url(transport)
        if nats_url is not None:
            from microstd.rpc.nats import NatsClientTransport

            self._nats = NatsClientTransport(nats_url)
        self._connected = False
        self._session: Any = None
        self._cache: dict[str, tuple[float, list[Node]]] = {}
        self._penalty: dict[str, float] = {}
        self._counters: dict[str, itertools.count[int]] = {}
        self._chained: CallNext = self._invoke
        self._chained_for: list[ClientMiddleware] = []
        _observe_state.refresh()

    def __repr__(self) -> str:
        return f"Client({self.registry!r})"

    @property
    def codec(self) -> codecs.Codec:
        """The codec requests are encoded with (and replies asked for)."""
        return self._codec

    @codec.setter
    def codec(self, codec: codecs.Codec) -> None:
        self._codec = codec
        # Built once: each call copies it and adds what changes per call.
        self._base_headers = {"Content-Type": codec.content_type, "Accept": codec.content_type}

    async def connect(self) -> None:
        """Connect the registry (done on first call otherwise)."""
        if not self._connected:
            await self.registry.connect()
            self._connected = True

    async def close(self) -> None:
        """Close HTTP connections, and the registry if this client opened it."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self._nats is not None:
            await self._nats.close()
        if self._owns_registry and self._connected:
            await self.registry.close()
        self._connected = False

    # --- resolution -----------------------------------------------------------

    async def _nodes(self, service: str, refresh: bool = False) -> list[Node]:
        now = time.monotonic()
        cached = self._cache.get(service)
        if cached is not None and cached[0] > now and not refresh:
            return cached[1]
        if not self._connected:
            await self.connect()
        nodes = [n for s in await self.registry.lookup(service) for n in s.nodes]
        self._cache[service] = (now + self.cache_ttl, nodes)
        return nodes

    def _pick(self, service: str, nodes: list[Node], avoid: AbstractSet[str]) -> Node:
        if avoid or self._penalty:
            now = time.monotonic()
            for node_id in [i for i, until in self._penalty.items() if until <= now]:
                del self._penalty[node_id]  # served its time
            good = [n for n in nodes if n.id not in avoid and n.id not in self._penalty]
            pool = good or [n for n in nodes if n.id not in avoid] or nodes
        else:
            pool = nodes  # nobody marked down: the common case
        if self.selector == "random":
            return random.choice(pool)
        counter = self._counters.get(service)
        if counter is None:
            counter = self._counters[service] = itertools.count()
        return pool[next(counter) % len(pool)]

    def _mark_down(self, node: Node) -> None:
        # A node that refused a connection is skipped for a while, until the
        # registry drops it (its TTL) or it comes back.
        self._penalty[node.id] = time.monotonic() + max(self.cache_ttl, 1.0) * 5

    # --- the call ---------------------------------------------------------------

    async def call(
        self,
        service: str,
        endpoint: str,
        body: object = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotent: bool = False,
        response_type: type[Any] | None = None,
        type: Any = None,
    ) -> Any:
        """Call `endpoint` of `service` with `body`; returns the decoded reply.

        `type=T` decodes the reply into a `T` (any type `microstd.codec.convert`
        knows), raising `ValidationError` with the path when it does not fit.
        `response_type` (a dataclass or pydantic model) converts the reply too.
        Raises `ServiceError` for an error reply, `NotFound` when the service is
        not registered, `DeadlineExceeded` past the timeout, `ConnectionFailed`
        when no node could be reached.
        """
        nats = self._nats
        if (
            nats is not None
            and body.__class__ in _PLAIN_BODIES
            and not (_observe.on or self.middleware or self.__dict__.get("_lifecycle_closed"))
        ):
            # Nothing sees the call on its way (no middleware, tracing or metrics):
            # straight to the NATS transport, which makes a Call only if it needs one.
            result = await nats.call(self, service, endpoint, body, timeout, metadata)
        else:
            call = Call(
                service, endpoint, body, dict(metadata) if metadata else {}, timeout, idempotent
            )
            # (A body that is an async iterable makes this a client-streaming call.)
            if _observe.on:
                result = await _observed.call(self.timeout, call, self._run)
            elif self.middleware:
                result = await self._chain()(call)
            else:
                result = await self._invoke(call)
        if type is not None:
            from microstd.codec.typed import convert_decoded

            return convert_decoded(result, type, self._codec.content_type)
        if response_type is not None:
            return build(response_type, result, service)
        return result

    def stream(
        self,
        service: str,
        endpoint: str,
        body: object = None,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        response_type: type[Any] | None = None,
    ) -> Stream:
        """A streaming call: iterate the result for the replies as they arrive.

        `body` is the request, or an async iterable of requests (a bidi stream:
        they are sent as the server takes them). `timeout` bounds the whole
        stream; None (the default) leaves it to the server's
        `max_stream_timeout` (or the deadline of the handler this is called
        from). `response_type` converts each reply. Nothing is sent until the
        first iteration; `aclose()` (or leaving `async with`) cancels the call.
        Client middleware wraps the stream too: it runs at the first iteration,
        with `call.stream` set, and its `call_next(call)` returns the replies'
        async iterator (see `Call.stream`).
        """
        from microstd.rpc.stream_client import Stream

        self._check_open()
        call = Call(
            service, endpoint, body, dict(metadata) if metadata else {}, timeout, stream=True
        )
        return Stream(self, call, response_type)

    def _run(self, call: Call) -> Awaitable[object]:
        return self._chain()(call) if self.middleware else self._invoke(call)

    def _chain(self) -> CallNext:
        # Built once per middleware list, not per call (the list is public and may change).
        if self._chained_for != self.middleware:
            nxt: CallNext = self._invoke
            for mw in reversed(self.middleware):
                nxt = _wrap(mw, nxt)
            self._chained, self._chained_for = nxt, list(self.middleware)
        return self._chained

    def _headers(self, call: Call, ctx: Context | None) -> dict[str, str]:
        headers = self._base_headers.copy()
        headers[REQUEST_ID_HEADER] = ctx.request_id if ctx is not None else new_request_id()
        caller = self.name or (ctx.service if ctx is not None else "")
        if caller:  # the server reads a missing caller as ""
            headers[CALLER_HEADER] = caller
        for key, value in call.metadata.items():
            headers[META_PREFIX + key] = str(value)
        if _observe.tracer is not None:
            _observed.inject(headers)  # traceparent / tracestate of the call's span
        return headers

    async def _invoke(self, call: Call) -> object:
        if self.__dict__.get("_lifecycle_closed"):  # (_check_open, inlined: every call)
            self._check_open()
        if type(call.body) not in _PLAIN_BODIES and is_stream_body(call.body):
            return await self._invoke_streaming(call)
        if self._nats is not None:
            return await self._nats.invoke(self, call)
        timeout = call.timeout if call.timeout is not None else self.timeout
        now = _monotonic()
        deadline = now + timeout
        ctx = _current_context.get()
        if ctx is not None and ctx.deadline is not None and ctx.deadline < deadline:
            deadline = ctx.deadline
        headers = self._headers(call, ctx)
        payload = self._codec.dumps(call.body)
        # One deadline bounds the whole call: lookup, every attempt and the pauses between.
        scope = Deadline(deadline)
        try:
            with scope:
                cached = self._cache.get(call.service)
                if cached is not None and cached[0] > now:
                    nodes = cached[1]  # the common case: no lookup
                else:
                    nodes = await self._nodes(call.service)
                node = self._pick(call.service, nodes, _NOTHING)
                try:
                    # The success path: one attempt, no retry bookkeeping.
                    if (self.local and self.registry.embedded) or _observe.tracer is not None:
                        reply = await self._send(node, call, payload, headers, deadline)
                    else:  # (_send, inlined for a call that can only go over HTTP)
                        left = deadline - _monotonic()
                        headers[TIMEOUT_HEADER] = f"{left if left > 0.0 else 0.0:.6f}"
                        reply = await self._http(node, call.endpoint, payload, headers)
                        if reply.not_started and reply.status == 503:
                            raise _Unavailable(_decode_error(call.service, reply))
                except _Retryable as exc:
                    return await self._retry(call, payload, headers, deadline, node, exc)
                if not reply.error and reply.content_type == self._codec.content_type:
                    try:
                        return self._codec.loads(reply.body)  # (_decode_reply's common case)
                    except MicrostdError:
                        pass  # its 502, made the slow way
                return self._decode_reply(call.service, reply, deadline)
        except TimeoutError:
            if not scope.expired:
                raise
            raise DeadlineExceeded(
                f"{call.service} {call.endpoint}: no reply within {timeout:g}s"
            ) from None

    async def _invoke_streaming(self, call: Call) -> object:
        from microstd.rpc.stream_client import call_streaming

        if call.timeout is None:
            call.timeout = self.timeout  # a call (not a stream) has the client's timeout
        return await call_streaming(self, call)

    async def _websocket(self, node: Node, endpoint: str, headers: dict[str, str]) -> Channel:
        """A WebSocket to `node` for a streaming call, as a frame channel."""
        session = self._session
        if session is None:
            session = self._session = _new_session()
        ws = await session.ws_connect(
            f"http://{node.address}/{endpoint}",
            headers=headers,
            max_msg_size=self.max_frame,
            autoping=True,
            autoclose=True,
        )
        return WebSocketChannel(ws)

    async def _retry(
        self,
        call: Call,
        payload: bytes,
        headers: dict[str, str],
        deadline: float,
        node: Node,
        failure: _Retryable,
    ) -> object:
        avoid: set[str] = set()
        last_error: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                node = self._pick(call.service, await self._nodes(call.service, True), avoid)
                try:
                    reply = await self._send(node, call, payload, headers, deadline)
                except _Retryable as exc:
                    failure = exc
                else:
                    return self._decode_reply(call.service, reply, deadline)
            if isinstance(failure, _NotSent):
                self._mark_down(node)
            elif isinstance(failure, _MaybeSent) and not call.idempotent:
                raise ConnectionFailed(
                    f"{call.service} {call.endpoint}: connection to {node.address} failed"
                    f" after the request was sent ({failure}); not retried (not idempotent)"
                ) from failure.__cause__
            avoid.add(node.id)
            last_error = failure.error if isinstance(failure, _Unavailable) else failure
            if attempt < self.retries:
                if _observe.tracer is not None:
                    _observed.note_retry(attempt, node.id, failure)
                pause = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        if isinstance(last_error, ServiceError):
            raise last_error
        raise ConnectionFailed(
            f"{call.service} {call.endpoint}: no node reachable after"
            f" {self.retries + 1} attempts ({last_error})"
        ) from last_error

    async def _send(
        self, node: Node, call: Call, payload: bytes, headers: dict[str, str], deadline: float
    ) -> Reply:
        """One attempt on `node`; raises `_Retryable` when another node may be tried."""
        headers[TIMEOUT_HEADER] = f"{max(deadline - time.monotonic(), 0.0):.6f}"
        server = local_server(node.id) if self.local and self.registry.embedded else None
        if _observe.tracer is not None:
            _observed.note_attempt(node.address, node.id, server is not None)
        if server is not None:
            ctype = self._codec.content_type
            reply = await server.dispatch(call.endpoint, payload, ctype, ctype, headers)
        else:
            reply = await self._http(node, call.endpoint, payload, headers)
        if reply.not_started and reply.status == 503:  # shutting down or busy: it did not run
            raise _Unavailable(_decode_error(call.service, reply))
        return reply

    async def _http(
        self, node: Node, endpoint: str, payload: bytes, headers: dict[str, str]
    ) -> Reply:
        session = self._session
        if session is None:
            session = self._session = _new_session()
        # aiohttp sends a large bytes body in one blocking write (and warns): a
        # file-like body is streamed instead. A fresh one per attempt.
        data: bytes | io.BytesIO = payload if len(payload) < _STREAM_BODY else io.BytesIO(payload)
        try:
            async with session.post(
                f"http://{node.address}/{endpoint}", data=data, headers=headers
            ) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers = resp.headers
                return Reply(
                    status,
                    body,
                    resp_headers.get("Content-Type", "application/octet-stream"),
                    resp_headers.get(REQUEST_ID_HEADER, ""),
                    error=status >= 400 or ERROR_HEADER in resp_headers,
                    not_started=status == 503 and NOT_STARTED_HEADER in resp_headers,
                )
        except _transport_errors() as exc:  # evaluated only when something was raised
            import aiohttp

            if isinstance(exc, aiohttp.ClientConnectorError):
                raise _NotSent(str(exc)) from exc
            raise _MaybeSent(f"{type(exc).__name__}: {exc}") from exc

    def _decode_reply(self, service: str, reply: Reply, deadline: float) -> object:
        if reply.error:
            raise past_deadline(_decode_error(service, reply), deadline)
        codec = self._codec
        try:
            if reply.content_type != codec.content_type:
                codec = codecs.get(reply.content_type)
            return codec.loads(reply.body)
        except MicrostdError as exc:
            raise ServiceError(
                service, 502, f"undecodable reply ({reply.content_type}): {exc}", "Bad Gateway"
            ) from exc


def _new_session() -> Any:
    _deps.require("aiohttp", "the HTTP RPC client", extra="http")
    import aiohttp

    # One session, kept for the client's life: pooled keep-alive connections. No
    # aiohttp timeout: the call's Deadline bounds everything, with a single timer.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256),
        skip_auto_headers=("User-Agent",),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    import aiohttp

    return (aiohttp.ClientError, OSError)


def past_deadline(error: ServiceError, deadline: float | None) -> MicrostdError:
    """`DeadlineExceeded` for a 504 that is the call's own deadline passing (the
    server enforces the deadline the call sent, and may answer a moment before
    the client's own timer fires); `error` itself otherwise."""
    if error.code == 504 and deadline is not None and time.monotonic() >= deadline - _SKEW:
        exc = DeadlineExceeded(f"{error.id}: the call ran past its deadline ({error.detail})")
        exc.__cause__ = error
        return exc
    return error


def _decode_error(service: str, reply: Reply) -> ServiceError:
    try:
        data = codecs.get(reply.content_type).loads(reply.body)
    except MicrostdError:
        data = None
    if isinstance(data, dict) and "code" in data:
        return ServiceError.from_dict(data)
    text = reply.body[:200].decode(errors="replace")
    return ServiceError(service, reply.status, text)


def _wrap(mw: ClientMiddleware, call_next: CallNext) -> CallNext:
    async def wrapped(call: Call) -> object:
        return await mw(call, call_next)

    return wrapped
