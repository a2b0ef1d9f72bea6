"""NATS and JetStream: the one client setup every area uses (nats-py).

    endpoint, rest = NatsEndpoint.from_url(parsed, options, area=("bucket",))
    conn = await acquire(endpoint)          # one connection per URL and settings, per event loop
    nc = await conn.ready("publish")        # waits up to `timeout` while reconnecting
    with errors(endpoint, "publish"):
        await nc.publish("a.b", b"x")
    await release(conn)

What it owns:

- **URL**: ``nats://[user:password@|token@]host[:port][,nats://host2:port...][?options]``
  (``tls://`` for TLS), or a host list sharing one set of credentials,
  ``nats://user:password@host1:4222,host2:4222``. With several servers nats-py
  connects to one at random and, when it dies, reconnects to another (and to
  the servers the cluster told it about); `NatsConnection.server` says which.
  Credentials and tokens never appear in a repr, a log line or an error
  message (`endpoint.redacted`).
- **Replicas**: `replicas_option` checks the ``replicas`` option of the areas
  that create JetStream buckets and streams (how many servers keep a copy).
- **Timeouts** (seconds; a query option or a keyword option overrides them):
  ``connect_timeout=5`` per connection attempt; ``timeout=5`` for any one
  request (a JetStream publish or API call, a flush);
  ``ping_interval=10``: the client pings the server that often and declares a
  connection that leaves a ping unanswered until the next one stale (so a
  frozen server or a cut connection is noticed within two intervals), and
  JetStream ordered consumers (watches) ask for heartbeats every half interval.
- **Reconnection**: once connected, the client reconnects **without limit**
  (``max_reconnect_attempts=-1``; a positive number bounds it), one attempt
  every ``reconnect_time_wait=0.5`` seconds, and nats-py subscribes again to
  every subscription. The *first* connection is not retried for ever: an
  unreachable server raises `ConnectionFailed` after two attempts.
- **No buffering while disconnected**: a call made while the connection is
  down waits up to ``timeout`` for it to come back (`ready`), then raises
  `ConnectionFailed`; nothing is queued to be sent later (nats-py would buffer
  it and send it after the reconnection, possibly minutes after the caller
  was told it failed, overwriting newer writes).
- **Error mapping** (`errors`): refused, lost, stale, closed or reconnecting
  connections, timeouts, "no responders" and JetStream "service unavailable"
  -> `ConnectionFailed`; refused credentials -> `ConnectionFailed` saying
  so; any other client or JetStream API error -> `MicrostdError` naming the
  operation. Callers that expect a particular API error (not found, wrong
  last sequence) catch it inside the block first.
- **Connection events**: `listen(callback)` reports "disconnected",
  "reconnected" and "closed" to every area sharing the connection (the broker
  passes them to its `on_error` hook); each is also logged once on
  ``microstd.nats`` (WARNING for a loss, INFO for its end).

Ambiguity: a JetStream publish or API request that raised `ConnectionFailed`
after it was sent (a timeout, a connection lost before the acknowledgement)
may have been applied. A core publish that returned was only written to the
connection: core NATS is at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import nats.errors as nerr
import nats.js.errors as jerr
from nats.aio.client import Client

from microstd._backends import ParsedURL, parse_url, redact, redact_text
from microstd._engines._common import Shared, Timeouts, seconds_option, split_options
from microstd.errors import Closed, ConnectionFailed, InvalidArgument, MicrostdError

__all__ = [
    "NatsConnection",
    "NatsEndpoint",
    "acquire",
    "errors",
    "release",
    "replicas_option",
]

log = logging.getLogger("microstd.nats")

#: The engine's own options, taken out of the URL and the keyword options.
ENGINE_OPTIONS = (*Timeouts.OPTIONS, "reconnect_time_wait", "max_reconnect_attempts")

ConnectionEvent = Literal["disconnected", "reconnected", "closed"]
Listener = Callable[[ConnectionEvent], None]

_UNREACHABLE = (
    nerr.ConnectionClosedError,
    nerr.NoServersError,
    nerr.TimeoutError,
    nerr.NoRespondersError,
    nerr.StaleConnectionError,
    nerr.OutboundBufferLimitError,
    nerr.ConnectionReconnectingError,
    nerr.ConnectionDrainingError,
    nerr.FlushTimeoutError,
    nerr.UnexpectedEOF,
    jerr.ServiceUnavailableError,
    # A JetStream publish nobody answered: on a cluster, while a stream's leader
    # is being elected after a server died (not applied: no server took it).
    jerr.NoStreamResponseError,
    asyncio.TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class NatsEndpoint:
    """Where the NATS servers are and how to treat the connection.

    `servers` is what nats-py gets (credentials included); `redacted` is safe
    to show. Equal endpoints share one connection.
    """

    servers: str
    redacted: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    reconnect_time_wait: float = 0.5
    max_reconnect_attempts: int = -1
    #: Every server of the URL, each a whole URL (what nats-py gets); empty: `servers`.
    server_list: tuple[str, ...] = ()

    @classmethod
    def from_url(
        cls,
        url: ParsedURL | str,
        options: Mapping[str, Any] | None = None,
        *,
        area: Iterable[str] = (),
    ) -> tuple[NatsEndpoint, dict[str, Any]]:
        """The endpoint a URL names, and the area's options.

        The engine options come from the query or `options` (keywords win).
        Everything else in the query and every other keyword option is
        returned for the area (`area` only documents which names it reads).
        """
        del area  # the whole query is the area's: nats-py reads nothing from it
        parsed = url if isinstance(url, ParsedURL) else parse_url(url)
        options = dict(options or {})
        engine, rest = split_options(parsed.query, options, ENGINE_OPTIONS)
        for name in ENGINE_OPTIONS:
            options.pop(name, None)
        rest.update(options)
        wait = engine.get("reconnect_time_wait")
        attempts = engine.get("max_reconnect_attempts")
        if attempts is not None:
            if isinstance(attempts, bool):
                raise InvalidArgument("max_reconnect_attempts must be an int")
            try:
                attempts = int(attempts)
            except ValueError:
                raise InvalidArgument(
                    f"max_reconnect_attempts must be an int, got {attempts!r}"
                ) from None
            if attempts == 0 or attempts < -1:
                raise InvalidArgument("max_reconnect_attempts must be positive, or -1 for no limit")
        servers = parsed.raw.split("?", 1)[0]
        endpoint = cls(
            servers,
            redact(servers),
            Timeouts.from_options(engine),
            0.5 if wait is None else seconds_option("reconnect_time_wait", wait),
            -1 if attempts is None else attempts,
            parsed.servers,
        )
        return endpoint, rest

    def __repr__(self) -> str:
        return f"NatsEndpoint({self.redacted!r})"


#: JetStream keeps at most five copies of a stream.
MAX_REPLICAS = 5


def replicas_option(value: object) -> int:
    """How many servers of a cluster keep a copy of a stream or bucket (the
    ``replicas`` option of every JetStream-backed area): 1 to 5, as an int or its
    text. 1 (the default) suits a single server; a three-server cluster wants 3,
    so a bucket stays readable and writable while any one server is down."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(f"replicas must be an int from 1 to {MAX_REPLICAS}, got {value!r}")
    try:
        replicas = int(value)
    except ValueError:
        raise InvalidArgument(
            f"replicas must be an int from 1 to {MAX_REPLICAS}, got {value!r}"
        ) from None
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"replicas must be from 1 to {MAX_REPLICAS}, got {replicas}")
    return replicas


def _fail(endpoint: NatsEndpoint, what: str, exc: BaseException, why: str) -> NoReturn:
    detail = redact_text(str(exc)) or type(exc).__name__
    raise ConnectionFailed(f"{what}: NATS at {endpoint.redacted} {why}: {detail}") from exc


@contextlib.contextmanager
def errors(endpoint: NatsEndpoint, what: str) -> Iterator[None]:
    """Translate nats-py's exceptions raised in the block into `microstd.errors`."""
    try:
        yield
    except MicrostdError:
        # Already ours (ConnectionFailed is also an OSError): never wrapped twice.
        raise
    except nerr.AuthorizationError as exc:
        _fail(endpoint, what, exc, "refused the credentials")
    except _UNREACHABLE as exc:
        _fail(endpoint, what, exc, "unreachable")
    except jerr.APIError as exc:
        description = redact_text(str(exc))
        raise MicrostdError(f"{what}: NATS JetStream answered an error: {description}") from exc
    except nerr.Error as exc:
        raise MicrostdError(f"{what}: NATS client error: {redact_text(str(exc))}") from exc


class NatsConnection:
    """The shared nats-py connection of one endpoint, and its connection events."""

    def __init__(self, endpoint: NatsEndpoint) -> None:
        self.endpoint = endpoint
        self.nc: Client | None = None
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()
        self._closed = False
        self._up = asyncio.Event()

    def __repr__(self) -> str:
        return f"NatsConnection({self.endpoint.redacted!r})"

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """`errors(self.endpoint, what)`."""
        return errors(self.endpoint, what)

    @property
    def connected(self) -> bool:
        """True while the connection is up (not reconnecting, not closed)."""
        return self.nc is not None and bool(self.nc.is_connected)

    @property
    def reconnecting(self) -> bool:
        """True while the connection is down and nats-py is bringing it back."""
        nc = self.nc
        return nc is not None and not nc.is_closed and not nc.is_connected and not self._closed

    @property
    def server(self) -> str | None:
        """``host:port`` of the server the connection is on now; None while it is down
        (with a server list, which one is nats-py's random pick, then its failover)."""
        nc = self.nc
        url = nc.connected_url if nc is not None and nc.is_connected else None
        return None if url is None else f"{url.hostname}:{url.port}"

    async def open(self) -> None:
        """Connect (again, after the connection was closed for good); `ConnectionFailed`
        if the server cannot be reached within two attempts."""
        async with self._lock:
            if self._closed:
                raise Closed("NATS connection is closed")
            if self.nc is not None and not self.nc.is_closed:
                return
            e = self.endpoint
            t = e.timeouts
            nc = Client()
            try:
                with self.errors("connect"):
                    try:
                        await nc.connect(
                            list(e.server_list or (e.servers,)),
                            connect_timeout=t.connect,  # type: ignore[arg-type]
                            reconnect_time_wait=e.reconnect_time_wait,  # type: ignore[arg-type]
                            # Two attempts for the first connection; see below.
                            max_reconnect_attempts=1,
                            allow_reconnect=True,
                            ping_interval=t.ping_interval,  # type: ignore[arg-type]
                            max_outstanding_pings=1,
                            pending_size=0,  # no buffering while disconnected (docstring)
                            error_cb=self._on_error,
                            disconnected_cb=self._on_disconnected,
                            reconnected_cb=self._on_reconnected,
                            closed_cb=self._on_closed,
                        )
                    except nerr.NoServersError as exc:
                        # "No servers" hides why: say what the last attempt met.
                        last = nc.last_error
                        why = f"{type(last).__name__}: {last}" if last is not None else str(exc)
                        raise ConnectionFailed(
                            f"connect: NATS at {e.redacted} unreachable: {redact_text(why)}"
                        ) from exc
            except BaseException:
                with contextlib.suppress(Exception):
                    await _close_bounded(nc, t.connect)
                raise
            # nats-py reads the limit at each reconnection: from now on, the
            # endpoint's (by default none).
            nc.options["max_reconnect_attempts"] = e.max_reconnect_attempts
            self.nc = nc
            self._up.set()

    def client(self, what: str = "request") -> Client:
        """The live connection; `ConnectionFailed` at once while it is down.

        After the connection was closed for good (a bounded reconnection gave
        up), call `open()` to make a new one; `ensure()` does both.
        """
        nc = self.nc
        if self._closed:
            raise Closed("NATS connection is closed")
        if nc is None or nc.is_closed:
            raise ConnectionFailed(f"{what}: NATS at {self.endpoint.redacted}: connection closed")
        if not nc.is_connected:
            raise ConnectionFailed(
                f"{what}: NATS at {self.endpoint.redacted} unreachable (reconnecting)"
            )
        return nc

    async def ensure(self, what: str = "request") -> Client:
        """`client(what)`, first reconnecting if the connection was closed for good."""
        if self.nc is None or self.nc.is_closed:
            await self.open()
        return self.client(what)

    async def ready(self, what: str = "request") -> Client:
        """The live connection, waiting up to `timeout` for it while it reconnects
        (a short blip costs a call some time, not an error); `ConnectionFailed`
        if it is not back in time. Nothing is sent before it is."""
        if self.nc is None or self.nc.is_closed:
            await self.open()
        nc = self.nc
        if nc is not None and not nc.is_connected and not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._up.wait(), self.endpoint.timeouts.request)
        return self.client(what)

    async def until_up(self, seconds: float) -> bool:
        """Wait up to `seconds` for the connection to be up (not reconnecting); True if
        it is. Sends nothing: for loops that should pause while the connection is
        reconnecting, not fail (a durable's pull). Returns False at once when it
        is closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.reconnecting:
            left = deadline - loop.time()
            if left <= 0:
                break
            if self._up.is_set():
                # nats-py reports the loss a moment after it stops sending: poll briefly.
                await asyncio.sleep(min(left, 0.02))
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._up.wait(), left)
        return self.connected

    def jetstream(self, what: str = "request") -> Any:
        """A JetStream context on the live connection, its requests bounded by `timeout`."""
        return self.client(what).jetstream(timeout=self.endpoint.timeouts.request)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` on each connection event; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return stop

    def _tell(self, event: ConnectionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("NATS connection listener raised")

    async def _on_error(self, exc: Exception) -> None:
        # nats-py reports every failed reconnection attempt here: the loss itself
        # is logged once, by _on_disconnected.
        log.debug("NATS client error on %s: %r", self.endpoint.redacted, exc)
        nc = self.nc
        # A reconnection attempt runs as "connecting" until CONNECT is answered.
        if nc is not None and (nc.is_reconnecting or nc.is_connecting):
            # nats-py (2.x) reuses its transport object for the next attempt and
            # replaces the stream of a failed one (TCP connected, no INFO in time)
            # without closing it: close it here, or every attempt against a
            # stalled server leaks a socket.
            transport = getattr(nc, "_transport", None)
            writer = getattr(transport, "_io_writer", None)
            if writer is not None and not writer.is_closing():
                writer.close()

    async def _on_disconnected(self) -> None:
        if self._closed:
            return
        self._up.clear()
        log.warning("NATS connection to %s lost; reconnecting", self.endpoint.redacted)
        self._tell("disconnected")

    async def _on_reconnected(self) -> None:
        self._up.set()
        log.info("NATS connection to %s restored", self.endpoint.redacted)
        self._tell("reconnected")

    async def _on_closed(self) -> None:
        self._up.clear()
        if self._closed:
            return
        log.warning("NATS connection to %s closed for good", self.endpoint.redacted)
        self._tell("closed")

    async def close(self) -> None:
        """Close the connection; idempotent."""
        self._closed = True
        nc, self.nc = self.nc, None
        if nc is not None:
            await _close_bounded(nc, self.endpoint.timeouts.request)


async def _close_bounded(nc: Client, seconds: float) -> None:
    """`nc.close()`, given up after `seconds`: nats-py flushes what is pending to
    the socket first and waits for it to drain, which a server that stopped reading
    (frozen, or dead behind a half-open connection) never lets finish. The socket
    is then aborted, its unsent bytes dropped: they were not acknowledged either.
    (Not closed: asyncio's close waits to send them first, which never happens,
    and leaves an open socket behind.)"""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), seconds)
        return
    # nats-py's socket wrapper and its asyncio writers have no public handle.
    wrapper = getattr(nc, "_transport", None)
    for name in ("_io_writer", "_bare_io_writer"):  # the TLS writer, and the socket's
        transport = getattr(getattr(wrapper, name, None), "transport", None)
        with contextlib.suppress(Exception):
            if transport is not None:
                transport.abort()
    # The rest of nats-py's close, skipped when it gave up at the drain: each
    # subscription's delivery task would otherwise wait for good.
    with contextlib.suppress(Exception):
        for sub in list(getattr(nc, "_subs", {}).values()):
            task = getattr(sub, "_wait_for_msgs_task", None)
            if task is not None and not task.done():
                task.cancel()
        nc._subs.clear()


_shared: Shared[NatsConnection] = Shared()


async def acquire(endpoint: NatsEndpoint) -> NatsConnection:
    """The shared, connected connection for `endpoint` on the running loop;
    `ConnectionFailed` if it cannot connect. Pair every call with `release`."""

    async def open() -> NatsConnection:
        conn = NatsConnection(endpoint)
        await conn.open()
        return conn

    return await _shared.acquire(endpoint, open)


async def release(conn: NatsConnection) -> None:
    """Give back a connection from `acquire`; the last user closes it."""

    async def close(c: NatsConnection) -> None:
        await c.close()

    await _shared.release(conn.endpoint, close)
