"""`nats://`: core NATS through nats-py.

    broker = microstd.broker.open("nats://127.0.0.1:4222")

Wildcards and queue groups are native NATS features. The server groups
queue subscribers by queue name alone, so the NATS queue name is the queue
qualified by its pattern (`queue@pattern`, see `nats_queue`): a group is its
pattern and queue name together, as the design says.
Headers travel as NATS headers; the content type is the `Content-Type`
header, removed from `Message.headers` on receipt. Each subscription's
messages go through the same bounded per-subscription queue as the memory
backend: with `overflow="block"` a full queue holds up nats-py's reader for
that subscription (whose own pending limits then apply); with `"drop"` the
message is dropped and counted.

Connection, timeouts and errors are `microstd._engines.nats`'s (options
``connect_timeout``, ``timeout``, ``ping_interval``, ``reconnect_time_wait``,
``max_reconnect_attempts``), and brokers, stores and registries on the same URL
share one connection. After an outage of any length the connection comes back
by itself (it reconnects without limit by default) and nats-py subscribes
again to every subscription. The loss and the return are logged and passed to
the `on_error` hook with each subscription, as a `ConnectionFailed` and then a
`ConnectionRestored`; messages published meanwhile are not delivered (core
NATS is at most once). While the connection is down `publish` waits up to
``timeout`` for it, then raises `ConnectionFailed` (nothing is buffered to be
sent later). A `publish` that returned was written to the connection, not
necessarily delivered.

On a cluster (``nats://a:4222,nats://b:4222``) the connection fails over to
another server. ``replicas=N`` (default 1) is how many servers keep each
JetStream stream the broker creates for durable subscriptions (3 on a
three-server cluster); an existing stream keeps the copies it has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from microstd._backends import ParsedURL
from microstd._engines import nats as engine
from microstd.broker._durable import (
    DurableOptions,
    StreamInfo,
    declared_stream,
    validate_name,
)
from microstd.broker._jetstream import JetStreams
from microstd.broker._network import NetworkBroker, NetworkSubscription, query_options
from microstd.broker._subjects import validate_pattern
from microstd.broker.base import (
    OCTET_STREAM,
    Handler,
    Message,
    Subscription,
    log,
)
from microstd.errors import (
    Closed,
    ConnectionFailed,
    ConnectionRestored,
    InvalidTopic,
)

__all__ = ["NatsBroker", "nats_queue"]

CONTENT_TYPE_HEADER = "Content-Type"


def nats_queue(pattern: str, queue: str | None) -> str:
    """The NATS queue name for group (`pattern`, `queue`).

    The NATS server groups the queue subscribers a message matches by queue
    name alone, so `a.*` and `a.>` with queue `q` would share one delivery.
    Qualifying the name with the pattern keeps them two groups, as designed.
    """
    return "" if queue is None else f"{queue}@{pattern}"


class NatsBroker(NetworkBroker):
    """Async broker on a NATS server: core NATS, and JetStream for durable subscriptions."""

    def __init__(self, servers: str | engine.NatsEndpoint, **options: Any) -> None:
        """`servers` is a ``nats://`` URL (or an endpoint); `options` are the broker's
        (`on_error`, `max_pending`, ...) and the engine's (`connect_timeout`, ...)."""
        if isinstance(servers, engine.NatsEndpoint):
            self._endpoint = servers
        else:
            self._endpoint, options = engine.NatsEndpoint.from_url(servers, options)
        #: Copies of each stream the broker creates (3 on a three-server cluster).
        self.replicas = engine.replicas_option(options.pop("replicas", 1))
        super().__init__(**options)
        self._conn: engine.NatsConnection | None = None
        self._stop_listening: Any = None
        self._jetstreams = JetStreams(self)

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> NatsBroker:
        merged = query_options(url.query, options)
        endpoint, rest = engine.NatsEndpoint.from_url(url.raw.split("?", 1)[0], merged)
        return cls(endpoint, **rest)

    def __repr__(self) -> str:
        return f"NatsBroker({self._endpoint.redacted!r})"

    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        return engine.errors(self._endpoint, f"broker {what}")

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._conn is not None:
            return
        conn = await engine.acquire(self._endpoint)
        self._stop_listening = conn.listen(self._on_connection)
        self._conn = conn

    def _on_connection(self, event: str) -> None:
        if event == "disconnected":
            self._connection_event(
                ConnectionFailed(
                    f"connection to {self._endpoint.redacted} lost; reconnecting, messages"
                    " published until it is back are not delivered"
                )
            )
        elif event == "reconnected":
            self._connection_event(
                ConnectionRestored(
                    f"connection to {self._endpoint.redacted} restored; receiving again"
                )
            )
        else:
            self._connection_event(
                ConnectionFailed(
                    f"connection to {self._endpoint.redacted} closed for good"
                    " (max_reconnect_attempts); subscriptions have ended"
                )
            )

    async def ping(self) -> None:
        """One round trip to the server (readiness checks); `ConnectionFailed` if none."""
        client = await self._client("ping")
        with self._errors("ping"):
            await client.flush(timeout=self._endpoint.timeouts.request)

    async def _client(self, what: str) -> Any:
        """The live connection (see `NatsConnection.ready`)."""
        if self._closed:
            raise Closed("broker is closed")
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        return await self._conn.ready(f"broker {what}")

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        queue: str | None = None,
        *,
        durable: str | None = None,
        **options: Any,
    ) -> Subscription:
        validate_pattern(pattern)
        durable_options = DurableOptions.parse(pattern, durable, options)
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        if durable_options is not None:
            await self._client("subscribe")
            return await self._jetstreams.subscribe(pattern, handler, queue, durable_options)
        nc = await self._client("subscribe")

        sub = NetworkSubscription(self, pattern, queue)
        delivery = self._new_delivery(sub, handler)

        async def on_message(msg: Any) -> None:
            headers = dict(msg.headers) if msg.headers else {}
            ct = headers.pop(CONTENT_TYPE_HEADER, OCTET_STREAM)
            if delivery.push(Message(msg.subject, msg.data, headers, ct)):
                await delivery.wait_for_room()

        try:
            with self._errors("subscribe"):
                nsub = await nc.subscribe(pattern, queue=nats_queue(pattern, queue), cb=on_message)
                # Once flushed the server has the interest: a publish right after is seen.
                await nc.flush(timeout=self._endpoint.timeouts.request)
        except BaseException:
            delivery.stop()
            raise

        async def cancel(drain: bool) -> None:
            with self._errors("unsubscribe"):
                if drain:
                    # nats-py holds received messages in its own queue until our
                    # callback takes them; unsubscribe() would discard those, so a
                    # close drains them into the delivery first (bounded).
                    try:
                        await asyncio.wait_for(nsub.drain(), self._opts.drain_timeout)
                    except asyncio.TimeoutError:
                        log.warning("NATS subscription drain timed out; unsubscribing")
                        with contextlib.suppress(Exception):
                            await nsub.unsubscribe()
                    return
                await nsub.unsubscribe()

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        if headers or content_type != OCTET_STREAM:
            headers = {**headers, CONTENT_TYPE_HEADER: content_type}
        nc = await self._client("publish")
        retained = self._jetstreams.retained_now(topic)
        if retained is None:
            retained = await self._jetstreams.retained(topic)
        with self._errors("publish"):
            if retained:
                # A stream keeps it: return once JetStream has it (its PubAck).
                assert self._conn is not None
                js = self._conn.jetstream("publish")
                await js.publish(topic, data, headers=headers or None)
                return
            # Raw bytes with no headers go header-less (HPUB costs more than PUB);
            # a message without `Content-Type` is read as application/octet-stream.
            await nc.publish(topic, data, headers=headers or None)

    async def add_stream(
        self,
        name: str,
        subjects: str | Sequence[str],
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        max_bytes: int | None = None,
    ) -> StreamInfo:
        patterns, limits = declared_stream(name, subjects, max_age, max_count, max_bytes)
        await self._client("add stream")
        await self._jetstreams.add_stream(name, patterns, limits)
        return await self._added_stream(name)

    async def streams(self) -> list[StreamInfo]:
        await self._client("streams")
        return await self._jetstreams.infos()

    async def delete_stream(self, name: str) -> None:
        await self._client("delete stream")
        await self._jetstreams.delete_stream(validate_name(name, "stream"))

    async def delete_durable(self, stream: str, name: str) -> None:
        await self._client("delete durable")
        await self._jetstreams.delete_durable(
            validate_name(stream, "stream"), validate_name(name, "durable")
        )

    async def flush(self) -> None:
        """Wait until the server has everything published so far (at most `timeout`)."""
        nc = await self._client("flush")
        with self._errors("flush"):
            await nc.flush(timeout=self._endpoint.timeouts.request)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._close_subscriptions()
            await self._jetstreams.close()
        finally:
            self._closed = True
            if self._stop_listening is not None:
                self._stop_listening()
            conn, self._conn = self._conn, None
            if conn is not None:
                await engine.release(conn)
