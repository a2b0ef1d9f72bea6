"""The RPC server: endpoints by name, codecs by content type, errors on the wire.

A request is `POST /Service.Method` whose body the codec its `Content-Type`
names decodes (`Accept` picks the reply's codec; the request's by default).
Errors are replies with `Microstd-Error: 1` and the body
`{"id", "code", "detail", "status"}`. The dispatch core (`Server.dispatch`) is
transport-free: aiohttp calls it for HTTP requests and a `Client` in the same
process calls it directly, so both paths share one set of semantics.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from microstd import codec as codecs
from microstd.codec.base import Codec
from microstd.errors import EncodeError, MicrostdError, ServiceError, UnknownContentType
from microstd.rpc.context import (
    ERROR_HEADER,
    REQUEST_ID_HEADER,
    Context,
    new_request_id,
    reset_context,
    set_context,
)
from microstd.rpc.convert import Endpoint
from microstd.rpc.deadline import Deadline

__all__ = ["Next", "Reply", "Server", "ServerMiddleware", "local_server"]

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
    it answers 503 like its HTTP side)."""
    return _LOCAL.get(node_id)


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True)
class Reply:
    """An encoded reply, ready for HTTP or a local caller."""

    status: int
    body: bytes
    content_type: str
    request_id: str
    error: bool = False

    def headers(self) -> dict[str, str]:
        out = {"Content-Type": self.content_type, REQUEST_ID_HEADER: self.request_id}
        if self.error:
            out[ERROR_HEADER] = "1"
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
    """Endpoints of one service, served over HTTP (aiohttp) and to in-process clients."""

    def __init__(
        self,
        name: str,
        *,
        node_id: str | None = None,
        middleware: Sequence[ServerMiddleware] = (),
        max_body: int = 4 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.node_id = node_id or f"{name.replace('.', '-')}-{uuid.uuid4().hex[:12]}"
        self.endpoints: dict[str, Endpoint] = {}
        self.middleware: list[ServerMiddleware] = list(middleware)
        self.max_body = max_body
        self.address = ""
        self.accepting = False
        self.ready = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._runner: Any = None

    def __repr__(self) -> str:
        return f"Server({self.name!r}, node={self.node_id!r}, address={self.address!r})"

    def add(self, name: str, fn: Callable[..., Any]) -> None:
        """Serve `fn` as endpoint `name` (`"Service.Method"`)."""
        if not isinstance(name, str) or "." not in name.strip(".") or "/" in name:
            raise ValueError(f"endpoint names look like 'Service.Method', got {name!r}")
        if name in self.endpoints:
            raise ValueError(f"endpoint {name!r} is already registered")
        self.endpoints[name] = Endpoint(name, fn)

    @property
    def inflight(self) -> int:
        """Requests being handled right now."""
        return self._inflight

    # --- dispatch -------------------------------------------------------------

    def _error(self, exc: ServiceError, out: Codec | None, request_id: str) -> Reply:
        out = out or codecs.get(DEFAULT_CONTENT_TYPE)
        try:
            body = out.dumps(exc.to_dict())
        except EncodeError:
            out = codecs.get(DEFAULT_CONTENT_TYPE)
            body = out.dumps(exc.to_dict())
        return Reply(exc.code, body, out.content_type, request_id, error=True)

    def fail(self, code: int, detail: str) -> ServiceError:
        """A `ServiceError` from this service with the reason phrase of `code`."""
        return ServiceError(self.name, code, detail, _phrase(code))

    async def dispatch(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str],
    ) -> Reply:
        """Decode, run the handler (through the middleware) and encode the reply."""
        ctx = Context.from_headers(self.name, endpoint, headers)
        rid = ctx.request_id
        try:
            in_codec = codecs.get(content_type or DEFAULT_CONTENT_TYPE)
        except UnknownContentType:
            detail = f"no codec for Content-Type {quote_header(content_type or '')}"
            return self._error(self.fail(415, detail), _accept_codec(accept, None), rid)
        out_codec = _accept_codec(accept, in_codec)
        if out_codec is None:
            detail = f"no codec for Accept {quote_header(accept or '')}"
            return self._error(self.fail(406, detail), None, rid)
        if len(body) > self.max_body:
            # The HTTP side refuses these before reading them; in-process calls end here.
            return self._error(self._too_large(), out_codec, rid)
        if not self.accepting:
            return self._error(self.fail(503, f"{self.name} is shutting down"), out_codec, rid)
        handler = self.endpoints.get(endpoint)
        if handler is None:
            return self._error(self.fail(404, f"unknown endpoint {endpoint!r}"), out_codec, rid)
        if ctx.deadline is not None and ctx.time_left() <= 0:  # type: ignore[operator]
            return self._error(self.fail(504, "deadline exceeded"), out_codec, rid)

        self._enter()
        try:
            try:
                request = in_codec.loads(body) if body else None
            except MicrostdError as exc:
                raise self.fail(400, f"undecodable {in_codec.content_type} body: {exc}") from exc
            result = await self._run(handler, ctx, request)
            try:
                return Reply(200, out_codec.dumps(result), out_codec.content_type, rid)
            except EncodeError as exc:
                log.error(
                    "%s %s: cannot encode reply (request %s): %s", self.name, endpoint, rid, exc
                )
                raise self.fail(500, f"the reply could not be encoded (request id {rid})") from exc
        except ServiceError as exc:
            return self._error(exc, out_codec, rid)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            if ctx.deadline is not None and ctx.time_left() <= 0:  # type: ignore[operator]
                return self._error(self.fail(504, "deadline exceeded"), out_codec, rid)
            log.exception("%s %s failed (request %s)", self.name, endpoint, rid, exc_info=exc)
            return self._error(self.fail(500, f"internal error (request id {rid})"), out_codec, rid)
        except Exception as exc:
            # The traceback stays in this service's log; the caller sees only the request id.
            log.exception("%s %s failed (request %s)", self.name, endpoint, rid, exc_info=exc)
            return self._error(self.fail(500, f"internal error (request id {rid})"), out_codec, rid)
        finally:
            self._leave()

    async def _run(self, handler: Endpoint, ctx: Context, request: object) -> object:
        if self.middleware:
            call: Next = functools.partial(_innermost, handler, self.name)
            for mw in reversed(self.middleware):
                call = _wrap(mw, call)
            work = call(ctx, request)
        else:
            work = handler(request, self.name)  # no middleware: no chain to build
        token = set_context(ctx)
        try:
            if ctx.deadline is None:
                return await work
            # Past the caller's deadline nobody waits for the answer: stop the work.
            with Deadline(ctx.deadline):
                return await work
        finally:
            reset_context(token)

    def _enter(self) -> None:
        self._inflight += 1
        if self._idle is not None:
            self._idle.clear()

    def _leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    # --- HTTP -----------------------------------------------------------------

    def _too_large(self) -> ServiceError:
        return self.fail(413, f"the request body is larger than {self.max_body} bytes")

    async def _http_call(self, request: Any) -> Any:
        from aiohttp import web

        endpoint = request.match_info["endpoint"]
        declared = request.content_length
        try:
            if declared is not None and declared > self.max_body:
                raise web.HTTPRequestEntityTooLarge(max_size=self.max_body, actual_size=declared)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # Our error shape (not aiohttp's text page), so the client raises a
            # ServiceError; the unread rest of the body makes the connection unusable.
            out = _accept_codec(request.headers.get("Accept"), None)
            reply = self._error(self._too_large(), out, new_request_id())
            headers = reply.headers()
            headers["Connection"] = "close"
            return web.Response(body=reply.body, status=413, headers=headers)
        reply = await self.dispatch(
            endpoint,
            body,
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
            request.headers,
        )
        headers = reply.headers()
        if not self.accepting:
            headers["Connection"] = "close"
        return web.Response(body=reply.body, status=reply.status, headers=headers)

    async def _http_health(self, request: Any) -> Any:
        from aiohttp import web

        live = request.path.endswith("/live")
        ok = live or (self.ready and self.accepting)
        status = "ok" if ok else ("draining" if self.ready else "starting")
        return web.json_response(
            {"status": status, "service": self.name, "node": self.node_id},
            status=200 if ok else 503,
        )

    async def start(self, address: str = "127.0.0.1:0") -> str:
        """Listen on `address` (`host:port`, port 0 picks one); returns the real address."""
        from aiohttp import web

        host, _, port_text = address.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"address must be 'host:port', got {address!r}") from None
        app = web.Application(client_max_size=self.max_body)
        app.router.add_get("/health", self._http_health)
        app.router.add_get("/health/live", self._http_health)
        app.router.add_get("/health/ready", self._http_health)
        app.router.add_post("/{endpoint}", self._http_call)
        # We drain in-flight requests ourselves (stop()); aiohttp's own wait is a backstop.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host or "127.0.0.1", port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = runner.addresses
        bound_port = sockets[0][1] if sockets else port
        self.address = f"{host or '127.0.0.1'}:{bound_port}"
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True
        _LOCAL[self.node_id] = self
        return self.address

    def stop_accepting(self) -> None:
        """New requests get 503 (clients retry elsewhere); in-flight ones finish."""
        self.accepting = False
        self.ready = False

    async def drain(self, grace: float) -> bool:
        """Wait up to `grace` seconds for in-flight requests; True if all finished."""
        if self._idle is None or self._inflight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning(
                "%s: %d requests still running after %.1fs", self.name, self._inflight, grace
            )
            return False
        return True

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, drain in-flight ones within `grace`, close the listener."""
        self.stop_accepting()
        await self.drain(grace)
        _LOCAL.pop(self.node_id, None)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


async def _innermost(handler: Endpoint, service: str, ctx: Context, body: object) -> object:
    return await handler(body, service)


def _wrap(mw: ServerMiddleware, call_next: Next) -> Next:
    async def wrapped(ctx: Context, body: object) -> object:
        return await mw(ctx, body, call_next)

    return wrapped
