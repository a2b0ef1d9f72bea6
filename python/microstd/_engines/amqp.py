"""AMQP 0-9-1 (RabbitMQ): the one client setup every area uses (aio-pika).

    endpoint, rest = AmqpEndpoint.from_url(parsed, options, area=("exchange",))
    conn = await acquire(endpoint)          # one connection per URL and settings, per event loop
    with errors(endpoint, "publish"):
        channel = await conn.channel(confirms=True)
    await release(conn)

What it owns, in the shape of `microstd._engines.redis` / `.nats`:

- **URL**: ``amqp://[user:password@]host[:port][/vhost][?options]`` (``amqps://``
  for TLS). The password never appears in a repr, a log line or an error
  message (`endpoint.redacted`). Query options other than the engine's and the
  area's are aio-pika's own and are passed through to it.
- **Timeouts** (seconds; a query option or a keyword option overrides them):
  ``connect_timeout=5`` to open the connection (TCP, AMQP handshake,
  authentication); ``timeout=5`` for any one request (a declare, a publisher
  confirm); ``ping_interval=10`` is the AMQP heartbeat: a connection silent
  for about twice that long is declared lost.
- **Reconnection**: the connection is aio-pika's robust one: after a loss it
  reconnects (every ``reconnect_time_wait=0.5`` seconds) and declares again
  the channels, exchanges, queues and consumers it had; deliveries that were
  unacked when the connection went are redelivered by the server.
- **Error mapping** (`errors`): refused, lost or closed connections and
  channels, timeouts and an unreachable host -> `ConnectionFailed`; refused
  credentials -> `ConnectionFailed` saying so; a precondition the server
  refused (a queue declared again with other arguments) -> `ValueError`
  naming it; any other client error -> `MicrostdError` naming the operation.
- **Shared connections**: one robust connection per endpoint per event loop,
  reference counted by `acquire` / `release`; channels are the areas' own.

Ambiguity: a publish that raised `ConnectionFailed` after it was sent (no
confirm before the timeout, the connection lost while waiting) may have been
routed and queued by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlencode

import aio_pika
import aio_pika.exceptions as aexc

from microstd._backends import ParsedURL, parse_url, redact, redact_text
from microstd._engines._common import Shared, Timeouts, seconds_option, split_options
from microstd.errors import ConnectionFailed, MicrostdError

__all__ = ["AmqpConnection", "AmqpEndpoint", "acquire", "errors", "release"]

log = logging.getLogger("microstd.amqp")

#: The engine's own options, taken out of the URL before aio-pika sees it.
ENGINE_OPTIONS = (*Timeouts.OPTIONS, "reconnect_time_wait")

_UNREACHABLE = (
    aexc.AMQPConnectionError,
    aexc.ChannelClosed,
    aexc.ChannelInvalidStateError,
    aexc.ConnectionClosed,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class AmqpEndpoint:
    """Where the AMQP server is and how long to wait for it.

    `url` is what aio-pika gets (the engine's and the area's options removed);
    `redacted` is safe to show. Equal endpoints share one connection.
    """

    url: str
    redacted: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    reconnect_time_wait: float = 0.5

    @classmethod
    def from_url(
        cls,
        url: ParsedURL | str,
        options: Mapping[str, Any] | None = None,
        *,
        area: Iterable[str] = (),
    ) -> tuple[AmqpEndpoint, dict[str, Any]]:
        """The endpoint a URL names, and the area's options.

        The engine options come from the query or `options` (keywords win).
        The options named in `area` are taken out of the query and returned,
        with every keyword option that is not the engine's; the rest of the
        query stays in the URL for aio-pika.
        """
        parsed = url if isinstance(url, ParsedURL) else parse_url(url)
        parsed.single_server("amqp://")
        options = dict(options or {})
        engine, query = split_options(parsed.query, options, ENGINE_OPTIONS)
        timeouts = Timeouts.from_options(engine)
        wait = engine.get("reconnect_time_wait")
        mine, query = split_options(query, {}, set(area))
        for name in ENGINE_OPTIONS:
            options.pop(name, None)
        mine.update(options)
        base = parsed.raw.split("?", 1)[0]
        if base.endswith("://" + parsed.netloc_name) and not parsed.path:
            base += "/"
        target = base + ("?" + urlencode(query) if query else "")
        endpoint = cls(
            target,
            redact(target),
            timeouts,
            0.5 if wait is None else seconds_option("reconnect_time_wait", wait),
        )
        return endpoint, mine

    def __repr__(self) -> str:
        return f"AmqpEndpoint({self.redacted!r})"


def _fail(endpoint: AmqpEndpoint, what: str, exc: BaseException, why: str) -> NoReturn:
    detail = redact_text(str(exc)) or type(exc).__name__
    raise ConnectionFailed(f"{what}: AMQP server at {endpoint.redacted} {why}: {detail}") from exc


@contextlib.contextmanager
def errors(endpoint: AmqpEndpoint, what: str) -> Iterator[None]:
    """Translate aio-pika's exceptions raised in the block into `microstd.errors`."""
    try:
        yield
    except aexc.ProbableAuthenticationError as exc:
        _fail(endpoint, what, exc, "refused the credentials")
    except aexc.ChannelPreconditionFailed as exc:
        raise ValueError(
            f"{what}: the AMQP server refused it as inconsistent: {redact_text(str(exc))}"
        ) from exc
    except _UNREACHABLE as exc:
        _fail(endpoint, what, exc, "unreachable")
    except aexc.AMQPError as exc:
        raise MicrostdError(f"{what}: AMQP error: {redact_text(str(exc))}") from exc


class AmqpConnection:
    """The shared robust connection of one endpoint."""

    def __init__(self, endpoint: AmqpEndpoint) -> None:
        self.endpoint = endpoint
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"AmqpConnection({self.endpoint.redacted!r})"

    def errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """`errors(self.endpoint, what)`."""
        return errors(self.endpoint, what)

    async def open(self) -> None:
        e = self.endpoint
        with self.errors("connect"):
            self.connection = await asyncio.wait_for(
                aio_pika.connect_robust(
                    e.url,
                    timeout=e.timeouts.connect,
                    heartbeat=max(1, round(e.timeouts.ping_interval)),
                    reconnect_interval=e.reconnect_time_wait,
                ),
                e.timeouts.connect * 2,
            )
        self.connection.reconnect_callbacks.add(self._on_reconnected)
        self.connection.close_callbacks.add(self._on_closed)

    def _on_reconnected(self, *args: Any) -> None:
        log.info("AMQP connection to %s restored", self.endpoint.redacted)

    def _on_closed(self, *args: Any) -> None:
        # aio-pika calls this on our own close too (with a CancelledError): not a loss.
        exc = args[-1] if args else None
        if isinstance(exc, BaseException) and not self._closing:
            log.warning("AMQP connection to %s lost: %s", self.endpoint.redacted, exc)

    async def channel(self, *, confirms: bool = False) -> aio_pika.abc.AbstractRobustChannel:
        """A new channel (publisher confirms on if `confirms`)."""
        if self.connection is None or self.connection.is_closed:
            raise ConnectionFailed(f"AMQP connection to {self.endpoint.redacted} is closed")
        with self.errors("open channel"):
            try:
                channel: aio_pika.abc.AbstractRobustChannel = await asyncio.wait_for(
                    self.connection.channel(publisher_confirms=confirms),
                    self.endpoint.timeouts.request,
                )
            except RuntimeError as exc:
                # aio-pika's "Connection was not opened" (on the call) and aiormq's
                # "<Connection ...> closed" (on the await, a reset mid-open): lost,
                # and not reconnected yet.
                raise ConnectionFailed(
                    f"open channel: AMQP connection to {self.endpoint.redacted} is reconnecting"
                ) from exc
        return channel

    async def close(self) -> None:
        self._closing = True
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


_shared: Shared[AmqpConnection] = Shared()


async def acquire(endpoint: AmqpEndpoint) -> AmqpConnection:
    """The shared, connected connection for `endpoint` on the running loop;
    `ConnectionFailed` if it cannot connect. Pair every call with `release`."""

    async def open() -> AmqpConnection:
        conn = AmqpConnection(endpoint)
        await conn.open()
        return conn

    return await _shared.acquire(endpoint, open)


async def release(conn: AmqpConnection) -> None:
    """Give back a connection from `acquire`; the last user closes it."""

    async def close(c: AmqpConnection) -> None:
        await c.close()

    await _shared.release(conn.endpoint, close)
