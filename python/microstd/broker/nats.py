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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from microstd._backends import ParsedURL
from microstd.broker._delivery import blocked_deliveries
from microstd.broker._durable import DurableOptions
from microstd.broker._network import NetworkBroker, NetworkSubscription, query_options
from microstd.broker._subjects import validate_pattern, validate_subject
from microstd.broker.base import (
    OCTET_STREAM,
    Handler,
    Message,
    Subscription,
    encode_body,
    log,
)
from microstd.errors import Closed, ConnectionFailed, InvalidTopic, NotSupported

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
    """Async broker on a NATS server (core NATS, no JetStream)."""

    def __init__(
        self,
        servers: str,
        *,
        connect_timeout: float = 2.0,
        max_reconnect_attempts: int = 60,
        reconnect_time_wait: float = 0.5,
        **options: Any,
    ) -> None:
        """`max_reconnect_attempts` bounds the first connection's attempts too (nats-py
        rules): an unreachable server raises `ConnectionFailed` after that many."""
        super().__init__(**options)
        self._servers = servers
        self._connect_timeout = connect_timeout
        self._max_reconnect = int(max_reconnect_attempts)
        self._reconnect_wait = float(reconnect_time_wait)
        self._nc: Any = None

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> NatsBroker:
        servers = url.raw.split("?", 1)[0]
        return cls(servers, **query_options(url.query, options))

    def __repr__(self) -> str:
        from microstd._backends import redact

        return f"NatsBroker({redact(self._servers)!r})"

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._nc is not None:
            return
        import nats
        from nats.errors import Error as NatsError

        try:
            self._nc = await nats.connect(
                self._servers,
                connect_timeout=max(1, round(self._connect_timeout)),
                max_reconnect_attempts=self._max_reconnect,
                allow_reconnect=True,
                reconnect_time_wait=self._reconnect_wait,
                error_cb=self._on_client_error,
            )
        except (OSError, TimeoutError, NatsError) as exc:
            raise ConnectionFailed(f"cannot connect to NATS at {self!r}: {exc}") from exc

    async def _on_client_error(self, exc: Exception) -> None:
        from microstd.broker.base import log

        log.warning("NATS client error: %s", exc)

    async def _client(self) -> Any:
        if self._closed:
            raise Closed("broker is closed")
        if self._nc is None:
            await self.connect()
        return self._nc

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
        if DurableOptions.parse(pattern, durable, options) is not None:
            raise NotSupported("durable subscriptions are not available on nats:// yet")
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        nc = await self._client()
        from nats.errors import Error as NatsError

        sub = NetworkSubscription(self, pattern, queue)
        delivery = self._new_delivery(sub, handler)

        async def on_message(msg: Any) -> None:
            headers = dict(msg.headers) if msg.headers else {}
            ct = headers.pop(CONTENT_TYPE_HEADER, OCTET_STREAM)
            delivery.push(Message(msg.subject, msg.data, headers, ct))
            if blocked_deliveries():
                await delivery.wait_for_room()

        try:
            nsub = await nc.subscribe(pattern, queue=nats_queue(pattern, queue), cb=on_message)
            # Once flushed the server has the interest: a publish right after is seen.
            await nc.flush()
        except NatsError as exc:
            delivery.stop()
            raise ConnectionFailed(f"NATS subscribe failed: {exc}") from exc

        async def cancel(drain: bool) -> None:
            try:
                if drain:
                    # nats-py holds received messages in its own queue until our
                    # callback takes them; unsubscribe() would discard those, so a
                    # close drains them into the delivery first (bounded).
                    try:
                        await asyncio.wait_for(nsub.drain(), self._opts.drain_timeout)
                    except asyncio.TimeoutError:
                        log.warning("NATS subscription drain timed out; unsubscribing")
                        with contextlib.suppress(NatsError):
                            await nsub.unsubscribe()
                    return
                await nsub.unsubscribe()
            except NatsError as exc:
                raise ConnectionFailed(f"NATS unsubscribe failed: {exc}") from exc

        sub.cancel = cancel
        self._subs.add(sub)
        return sub

    async def publish(
        self,
        topic: str,
        body: object,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        validate_subject(topic)
        data, ct, hdrs = encode_body(body, content_type, headers)
        if hdrs or ct != OCTET_STREAM:
            hdrs[CONTENT_TYPE_HEADER] = ct
        nc = await self._client()
        from nats.errors import Error as NatsError

        try:
            # Raw bytes with no headers go header-less (HPUB costs more than PUB);
            # a message without `Content-Type` is read as application/octet-stream.
            await nc.publish(topic, data, headers=hdrs or None)
        except NatsError as exc:
            raise ConnectionFailed(f"NATS publish failed: {exc}") from exc

    async def flush(self) -> None:
        """Wait until the server has everything published so far."""
        nc = await self._client()
        await nc.flush()

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._close_subscriptions()
        finally:
            self._closed = True
            if self._nc is not None:
                nc, self._nc = self._nc, None
                await nc.close()
