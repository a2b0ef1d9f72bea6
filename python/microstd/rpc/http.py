"""The HTTP side of a `Server` (aiohttp): unary calls, streams, health.

- `POST /Service.Method`: a unary call; the body is the encoded request.
- `GET /Service.Method` upgraded to a WebSocket: a streaming call, one binary
  message per frame (`rpc/frames.py`). Refusals (unknown endpoint, shutting
  down, ...) come as the stream's first frame, so the client reads them as it
  reads any stream error.
- `GET /health`, `/health/live`, `/health/ready`.

The request path itself is the `Server`'s (`_prepare`, admission, `_handle`,
`run_stream`); this module only turns HTTP into those calls and back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microstd import _deps
from microstd.observe import _state as _observe_state
from microstd.observe import rpc as _observed
from microstd.rpc.context import REQUEST_ID_HEADER, within
from microstd.rpc.frames import WebSocketChannel
from microstd.rpc.limits import AMPLIFICATION

if TYPE_CHECKING:
    from microstd.rpc.server import Reply, Server

__all__ = ["HttpTransport"]

#: Tracing and metrics switches (`microstd.observe`): one attribute read per request when off.
_observe = _observe_state.state

#: Seconds a connection whose body was refused may go on sending it.
_LINGER = 1.0
#: Seconds aiohttp waits, when the server stops, for requests still sending
#: their body (in-flight handlers are drained and abandoned by `Server.stop`).
_SHUTDOWN_WAIT = 0.1
#: Seconds to wait for the client's answer to a WebSocket close.
_WS_CLOSE_WAIT = 2.0

#: aiohttp's `web.Response`, set by the first `start()` (microstd imports no network
#: client until one is used); a module global because every call makes one.
_Response: Any = None


class HttpTransport:
    """An aiohttp server for one `Server`, listening on one address."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._runner: Any = None

    async def start(self, address: str) -> str:
        """Listen on `address` (`host:port`, port 0 picks one); returns the real address."""
        global _Response
        _deps.require("aiohttp", "a Service's HTTP server", extra="http")
        from aiohttp import web

        _Response = web.Response
        host, _, port_text = address.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"address must be 'host:port', got {address!r}") from None
        limits = self.server.limits
        app = web.Application(client_max_size=limits.max_body)
        app.router.add_get("/health", self.health)
        app.router.add_get("/health/live", self.health)
        app.router.add_get("/health/ready", self.health)
        # Off, /metrics says how to turn it on (else GET would reach the stream route: a 405).
        app.router.add_get(
            "/metrics", self.metrics if self.server.metrics_endpoint else self.metrics_off
        )
        app.router.add_post("/{endpoint}", self.call)
        app.router.add_get("/{endpoint}", self.stream)
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_WAIT,
            handle_signals=False,
            # Also closes a connection that never completes its headers (slowloris).
            keepalive_timeout=limits.idle_timeout,
            # After refusing a body (408, 413) aiohttp reads and drops the rest before
            # closing, so the client sees the reply: 1 s of that, not its default 10.
            lingering_time=_LINGER,
        )
        await runner.setup()
        host = host or "127.0.0.1"
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = runner.addresses
        return f"{host}:{sockets[0][1] if sockets else port}"

    async def stop(self) -> None:
        """Close the listener and the connections left."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def call(self, request: Any) -> Any:
        """A unary call: `POST /Service.Method`."""
        server = self.server
        headers = request.headers
        prepared = server._prepare(
            request.match_info["endpoint"],
            headers.get("Content-Type"),
            headers.get("Accept"),
            headers,
        )
        if not isinstance(prepared, tuple):
            return _response(prepared, close=not request.content.is_eof())
        ctx, handler, in_codec, out_codec = prepared
        limits = server.limits
        declared = request.content_length
        if declared is not None and declared > limits.max_body:
            # Our error shape (not aiohttp's text page), so the client raises a
            # ServiceError; the unread rest of the body makes the connection unusable.
            refusal = server._error(server._too_large(), out_codec, ctx.request_id)
            return _response(refusal, close=True)
        # Admitted before the body is read: a request waiting in line holds no body.
        budget = server._budget
        charge = ((limits.max_body if declared is None else declared) + 64) * AMPLIFICATION
        if charge > budget.capacity:  # (Limits.charge, inlined: every call)
            charge = budget.capacity
        if not budget.try_take(charge):
            refused = await server._admit(ctx, charge, out_codec)
            if refused is not None:
                return _response(refused, close=True)
        try:
            try:
                if request.content.is_eof():
                    body = await request.read()  # all here already: the common case
                else:
                    body = await within(request.read(), limits.body_timeout)
            except _web().HTTPRequestEntityTooLarge:  # (evaluated only on an exception)
                refusal = server._error(server._too_large(), out_codec, ctx.request_id)
                return _response(refusal, close=True)
            except TimeoutError:
                detail = f"the request body did not arrive within {limits.body_timeout:g}s"
                reply = server._error(server.fail(408, detail), out_codec, ctx.request_id)
                return _response(reply, close=True)
            work = server._handle(ctx, handler, in_codec, out_codec, body)
            if _observe.on:
                reply = await _observed.serve(server.name, server.node_id, ctx, headers, work)
            else:
                reply = await work
        finally:
            budget.give(charge)
        return _response(reply, close=not server.accepting)

    async def stream(self, request: Any) -> Any:
        """A streaming call: `GET /Service.Method`, upgraded to a WebSocket."""
        from aiohttp import web

        server = self.server
        ws = web.WebSocketResponse(
            max_msg_size=server.limits.max_body,
            timeout=_WS_CLOSE_WAIT,
            autoping=True,
        )
        if not ws.can_prepare(request).ok:
            detail = "streaming calls are WebSocket upgrades; unary calls are POST"
            reply = server._error(server.fail(405, detail), None, "")
            return _response(reply, close=False)
        await ws.prepare(request)
        headers = request.headers
        await server.serve_stream(
            WebSocketChannel(ws),
            request.match_info["endpoint"],
            headers.get("Content-Type"),
            headers.get("Accept"),
            headers,
        )
        return ws

    async def health(self, request: Any) -> Any:
        """`/health/live` (the process serves); `/health/ready` and `/health` (ready:
        started, taking requests, and the server's `readiness` checks pass)."""
        from aiohttp import web

        server = self.server
        body: dict[str, Any] = {"service": server.name, "node": server.node_id}
        if request.path.endswith("/live"):
            ok = True
        elif not (server.ready and server.accepting):
            ok = False
            body["status"] = "draining" if server.draining else "starting"
        elif server.readiness is not None:
            ok, details = await server.readiness()
            body.update(details)
        else:
            ok = True
        body.setdefault("status", "ok" if ok else "failing")
        return web.json_response(
            body, status=200 if ok else 503, headers={"Cache-Control": "no-store"}
        )

    async def metrics_off(self, request: Any) -> Any:
        """`/metrics` while metrics are off: a 404 that says how to turn them on."""
        from aiohttp import web

        return web.Response(
            status=404,
            text="metrics are off: Service(metrics=True) or MICROSTD_METRICS=1"
            " (needs pip install 'microstd[prometheus]')\n",
        )

    async def metrics(self, request: Any) -> Any:
        """`/metrics`: Prometheus text (when the server's `metrics_endpoint` is on)."""
        from aiohttp import web

        from microstd.observe.metrics import prometheus_text

        text, content_type = prometheus_text()
        # aiohttp takes the charset apart from the media type.
        media, _, params = content_type.partition(";")
        charset = params.split("charset=", 1)[1].strip() if "charset=" in params else None
        resp = web.Response(body=text, headers={"Cache-Control": "no-store"})
        resp.content_type = media.strip()
        if charset:
            resp.charset = charset
        return resp


def _web() -> Any:
    from aiohttp import web

    return web


def _response(reply: Reply, *, close: bool = False) -> Any:
    if reply.error or close:
        headers = reply.headers()
        if close:
            headers["Connection"] = "close"
    else:  # (Reply.headers, inlined for the common case)
        headers = {"Content-Type": reply.content_type, REQUEST_ID_HEADER: reply.request_id}
    return _Response(body=reply.body, status=reply.status, headers=headers)
