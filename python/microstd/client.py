"""`Client`: call a service's endpoint by name, resolved through the registry.

    async with microstd.Client() as client:          # the process's memory://default registry
        reply = await client.call("greeter", "Greeter.Hello", {"name": "a"})

The client looks the service up (caching the answer for `cache_ttl` seconds),
picks a node (round robin or random), and sends `POST /Service.Method`.

Retries, with exponential backoff, happen only when the request certainly did
not run: the connection could not be opened, or the server answered 503 (it
is shutting down and did not start the work). A request that may have reached
a handler is retried only when the call says `idempotent=True`.

Each call has a timeout (`timeout=`, default the client's); the time left
travels with the request, so the server stops working past it, and a call
made inside a handler inherits the smaller of its own timeout and its
caller's. Past the deadline the call raises `DeadlineExceeded`.

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
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from microstd import codec as codecs
from microstd.errors import (
    ConnectionFailed,
    DeadlineExceeded,
    MicrostdError,
    ServiceError,
)
from microstd.registry import Node, Registry
from microstd.registry import open as open_registry
from microstd.rpc.context import (
    CALLER_HEADER,
    ERROR_HEADER,
    META_PREFIX,
    REQUEST_ID_HEADER,
    TIMEOUT_HEADER,
    current_context,
    new_request_id,
    within,
)
from microstd.rpc.convert import build
from microstd.rpc.server import Reply, local_server

__all__ = ["Call", "CallNext", "Client", "ClientMiddleware"]

DEFAULT_REGISTRY = "memory://default"
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


CallNext = Callable[[Call], Awaitable[object]]
#: `async def mw(call, call_next) -> reply`: wraps every call.
ClientMiddleware = Callable[[Call, CallNext], Awaitable[object]]


class _NotSent(Exception):
    """The request never reached a server: safe to retry."""


class _MaybeSent(Exception):
    """The connection failed after the request may have reached a handler."""


class Client:
    """Calls services by name. Close it (or use `async with`) to release connections."""

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
        self.codec = codecs.get(content_type)
        self.middleware: list[ClientMiddleware] = list(middleware)
        self.cache_ttl = cache_ttl
        self.local = local
        self._connected = False
        self._session: Any = None
        self._cache: dict[str, tuple[float, list[Node]]] = {}
        self._penalty: dict[str, float] = {}
        self._counters: dict[str, itertools.count[int]] = {}

    def __repr__(self) -> str:
        return f"Client({self.registry!r})"

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

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
        if self._owns_registry and self._connected:
            await self.registry.close()
        self._connected = False

    # --- resolution -----------------------------------------------------------

    async def _nodes(self, service: str, refresh: bool = False) -> list[Node]:
        now = time.monotonic()
        cached = self._cache.get(service)
        if cached is not None and cached[0] > now and cached[1] and not refresh:
            return cached[1]
        await self.connect()
        nodes = [n for s in await self.registry.lookup(service) for n in s.nodes]
        self._cache[service] = (now + self.cache_ttl, nodes)
        return nodes

    def _pick(self, service: str, nodes: list[Node], avoid: set[str]) -> Node:
        now = time.monotonic()
        good = [n for n in nodes if n.id not in avoid and self._penalty.get(n.id, 0.0) <= now]
        pool = good or [n for n in nodes if n.id not in avoid] or nodes
        if self.selector == "random":
            return random.choice(pool)
        counter = self._counters.setdefault(service, itertools.count())
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
    ) -> Any:
        """Call `endpoint` of `service` with `body`; returns the decoded reply.

        `response_type` (a dataclass or pydantic model) converts the reply.
        Raises `ServiceError` for an error reply, `NotFound` when the service is
        not registered, `DeadlineExceeded` past the timeout, `ConnectionFailed`
        when no node could be reached.
        """
        call = Call(service, endpoint, body, dict(metadata or {}), timeout, idempotent)
        nxt: CallNext = self._invoke
        for mw in reversed(self.middleware):
            nxt = _wrap(mw, nxt)
        result = await nxt(call)
        if response_type is not None:
            return build(response_type, result, service)
        return result

    async def _invoke(self, call: Call) -> object:
        ctx = current_context()
        timeout = call.timeout if call.timeout is not None else self.timeout
        deadline = time.monotonic() + timeout
        if ctx is not None and ctx.deadline is not None:
            deadline = min(deadline, ctx.deadline)
        payload = self.codec.dumps(call.body)
        headers = {
            "Content-Type": self.codec.content_type,
            "Accept": self.codec.content_type,
            REQUEST_ID_HEADER: ctx.request_id if ctx is not None else new_request_id(),
            CALLER_HEADER: self.name or (ctx.service if ctx is not None else ""),
        }
        for key, value in call.metadata.items():
            headers[f"{META_PREFIX}{key}"] = str(value)

        avoid: set[str] = set()
        last_error: BaseException | None = None
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cached = self._cache.get(call.service)
            if not avoid and cached is not None and cached[0] > time.monotonic() and cached[1]:
                nodes = cached[1]  # the common case, without a lookup
            else:
                try:
                    nodes = await within(self._nodes(call.service, bool(avoid)), left)
                except asyncio.TimeoutError:
                    break
            node = self._pick(call.service, nodes, avoid)
            headers[TIMEOUT_HEADER] = f"{max(deadline - time.monotonic(), 0.0):.6f}"
            try:
                reply = await self._send(node, call.endpoint, payload, headers, deadline)
            except _NotSent as exc:
                self._mark_down(node)
                avoid.add(node.id)
                last_error = exc
            except _MaybeSent as exc:
                if not call.idempotent:
                    raise ConnectionFailed(
                        f"{call.service} {call.endpoint}: connection to {node.address} failed"
                        f" after the request was sent ({exc}); not retried (not idempotent)"
                    ) from exc.__cause__
                avoid.add(node.id)
                last_error = exc
            else:
                if reply.status == 503 and reply.error:
                    avoid.add(node.id)  # shutting down: the work did not start
                    last_error = _decode_error(call.service, reply)
                else:
                    return _decode_reply(call.service, reply)
            if attempt < self.retries:
                pause = self.backoff * (2**attempt) * (0.5 + random.random() / 2)
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"{call.service} {call.endpoint}: no reply within {timeout:g}s"
            ) from last_error
        if isinstance(last_error, ServiceError):
            raise last_error
        raise ConnectionFailed(
            f"{call.service} {call.endpoint}: no node reachable after"
            f" {self.retries + 1} attempts ({last_error})"
        ) from last_error

    async def _send(
        self, node: Node, endpoint: str, payload: bytes, headers: dict[str, str], deadline: float
    ) -> Reply:
        left = deadline - time.monotonic()
        server = local_server(node.id) if self.local and self.registry.embedded else None
        if server is not None:
            try:
                return await within(
                    server.dispatch(
                        endpoint, payload, headers["Content-Type"], headers["Accept"], headers
                    ),
                    left,
                )
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"{endpoint}: no reply before the deadline") from None
        return await self._http(node, endpoint, payload, headers, left)

    async def _http(
        self, node: Node, endpoint: str, payload: bytes, headers: dict[str, str], left: float
    ) -> Reply:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), skip_auto_headers=("User-Agent",)
            )
        url = f"http://{node.address}/{endpoint}"
        # aiohttp sends a large bytes body in one blocking write (and warns): a
        # file-like body is streamed instead. A fresh one per attempt.
        data: bytes | io.BytesIO = payload if len(payload) < _STREAM_BODY else io.BytesIO(payload)
        try:
            async with self._session.post(
                url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=left)
            ) as resp:
                body = await resp.read()
                return Reply(
                    resp.status,
                    body,
                    resp.headers.get("Content-Type", "application/octet-stream"),
                    resp.headers.get(REQUEST_ID_HEADER, ""),
                    error=resp.status >= 400 or ERROR_HEADER in resp.headers,
                )
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"{endpoint}: no reply from {node.address} in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise _NotSent(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _MaybeSent(f"{type(exc).__name__}: {exc}") from exc


def _decode_error(service: str, reply: Reply) -> ServiceError:
    try:
        data = codecs.get(reply.content_type).loads(reply.body)
    except MicrostdError:
        data = None
    if isinstance(data, dict) and "code" in data:
        return ServiceError.from_dict(data)
    text = reply.body[:200].decode(errors="replace")
    return ServiceError(service, reply.status, text, _phrase(reply.status))


def _decode_reply(service: str, reply: Reply) -> object:
    if reply.error:
        raise _decode_error(service, reply)
    try:
        return codecs.get(reply.content_type).loads(reply.body)
    except MicrostdError as exc:
        raise ServiceError(
            service, 502, f"undecodable reply ({reply.content_type}): {exc}", "Bad Gateway"
        ) from exc


def _phrase(code: int) -> str:
    import http

    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _wrap(mw: ClientMiddleware, call_next: CallNext) -> CallNext:
    async def wrapped(call: Call) -> object:
        return await mw(call, call_next)

    return wrapped
