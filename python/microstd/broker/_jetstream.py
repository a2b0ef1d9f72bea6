"""Durable subscriptions of `nats://`: JetStream streams and durable pull consumers.

- A stream is a JetStream stream (file storage, oldest discarded first) with
  the same subjects and limits; `add_stream` creates or updates it.
- A durable is a durable *pull* consumer of the stream covering its pattern,
  filtered by that pattern, with explicit acks, `ack_wait`, and no server
  limit on deliveries: `max_deliver` is kept here (a delivery past it
  dead-letters the message without running the handler), so a message
  whose dead-letter publish failed is delivered again and tried once more,
  where a server limit would strand it. Every live subscriber of the durable pulls
  from the same consumer, up to its room (`max_inflight` unsettled), so the
  server shares the messages between them, and a subscriber that dies leaves
  its messages to the others after `ack_wait`.
- Settling maps onto JetStream acks: `ack` → +ACK, `nack(delay)` → -NAK with
  that delay (the backoff is applied here), `term` → +TERM, `in_progress` →
  +WPI, a release (never started) → -NAK.
- Publishing to a topic a stream retains goes through JetStream and returns
  on its PubAck. Which topics are retained comes from the stream list, read
  at the first publish and again whenever the server announces a stream
  change (an advisory); a publish in the instant between another process
  creating a stream and the announcement arriving is still stored by the
  stream (JetStream captures core publishes), only not acknowledged. While
  the list cannot be read (JetStream does not answer: a cluster electing its
  leaders, a frozen server) a publish raises `ConnectionFailed` unsent; only a
  server or account without JetStream makes every publish a core one.
- Dead-letter counts live in the key-value bucket `microstd_dead_letters`.

`msg.id` is `stream:sequence`; `delivery_count` is JetStream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import nats.errors as nerr
import nats.js.api as api
import nats.js.errors as jerr

from microstd._engines import nats_kv
from microstd.broker._durable import (
    DurableInfo,
    DurableOptions,
    StreamInfo,
    StreamLimits,
    covers,
    implicit_stream_name,
)
from microstd.broker._durable_delivery import DurableDelivery, Settler
from microstd.broker._durable_member import PullMember, PullMessage
from microstd.broker._network import NetworkSubscription
from microstd.broker._subjects import matches
from microstd.broker.base import OCTET_STREAM, Handler, log
from microstd.errors import ConnectionFailed, MicrostdError

if TYPE_CHECKING:
    from microstd.broker.nats import NatsBroker

__all__ = ["JetStreams", "NatsDurableMessage"]

CONTENT_TYPE_HEADER = "Content-Type"
DEAD_BUCKET = "microstd_dead_letters"
#: Most messages one pull asks for.
_BATCH = 64
#: How long one pull waits for messages before asking again (seconds).
_PULL_WAIT = 1.0
_STREAM_ADVISORIES = "$JS.EVENT.ADVISORY.STREAM.*.*"
#: Topics whose "retained?" answer is remembered; then the memory starts over.
_TOPIC_CACHE_MAX = 8192
#: Name prefixes of the streams behind key-value buckets and object stores.
_INTERNAL_STREAMS = ("KV_", "OBJ_")
#: JetStream API error codes meaning "JetStream is not enabled" (server, account).
_NO_JETSTREAM_CODES = frozenset({10076, 10039})


class NatsDurableMessage(PullMessage):
    """A delivery of a durable subscription on `nats://`."""

    __slots__ = ("msg",)

    def __init__(self, msg: Any, member: _Member) -> None:
        headers = dict(msg.headers) if msg.headers else {}
        content_type = headers.pop(CONTENT_TYPE_HEADER, OCTET_STREAM)
        meta = msg.metadata
        msgid = f"{meta.stream}:{meta.sequence.stream}"
        super().__init__(
            msg.subject,
            msg.data,
            headers,
            content_type,
            msgid,
            int(meta.num_delivered),
            member,
        )
        self.msg = msg


class _Member(PullMember):
    """One subscriber of a durable: its pull loop, its room, its settles."""

    def __init__(
        self, streams: JetStreams, stream: str, name: str, pattern: str, options: DurableOptions
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(options, Settler(options, streams.broker._publish_raw, loop))
        self.streams = streams
        self.stream = stream
        self.name = name
        self.pattern = pattern
        self.psub: Any = None
        self.puller: asyncio.Task[None] | None = None
        #: Settles waiting for the sending task.
        self.outbox: list[tuple[NatsDurableMessage, str, float, bool]] = []

    def send(self, message: NatsDurableMessage, how: str, delay: float, dead: bool) -> None:
        self.settled(message, how)
        # One task sends every settle queued in a turn of the loop (a task per
        # ack cost more than the ack itself).
        self.outbox.append((message, how, delay, dead))
        if len(self.outbox) == 1:
            self.spawn(self._send_all())

    async def _send_all(self) -> None:
        while self.outbox:
            batch, self.outbox = self.outbox, []
            for message, how, delay, dead in batch:
                await self._send(message, how, delay, dead)

    async def _send(self, message: NatsDurableMessage, how: str, delay: float, dead: bool) -> None:
        msg = message.msg
        try:
            if how == "ack":
                await msg.ack()
            elif how == "term":
                await msg.term()
                if dead:
                    await self.streams.count_dead(self.stream, self.name)
            elif how == "progress":
                await msg.in_progress()
            elif how == "nack" and delay > 0:
                await msg.nak(delay=delay)
            else:
                await msg.nak()
        except Exception as exc:
            # Unsettled, so the server delivers it again after ack_wait: at least once.
            log.debug("nats durable %r: %s failed: %s", self.name, how, exc)

    async def pull(self) -> None:
        """Fetch what there is room for and hand it to the delivery, until stopped."""
        while not self.stopping:
            want = await self.room_for()
            if not want:
                continue
            conn = self.streams.broker._conn
            if conn is not None and conn.reconnecting:
                # Down: pull again as soon as it is back. A fetch now would fail (no
                # buffering while disconnected) and drop what nats-py had already
                # taken off the subscription's queue: delivered to us, so back only
                # after ack_wait. Nothing runs between this check and the fetch's
                # own, so every fetch starts on a live connection.
                await conn.until_up(_PULL_WAIT)
                continue
            try:
                msgs = await self.psub.fetch(min(want, _BATCH), timeout=_PULL_WAIT)
            except (nerr.TimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                log.warning("nats durable %r: pulling failed, retrying: %s", self.name, exc)
                await asyncio.sleep(0.5)
                continue
            assert self.delivery is not None
            for msg in msgs:
                message = NatsDurableMessage(msg, self)
                if self.stopping:
                    # Fetched while stopping: straight back, for another subscriber.
                    self.inflight += 1
                    message.settle("release")
                    continue
                if not matches(self.pattern, message.topic):
                    message.settle("ack")  # outside the filter: cannot happen, skip safely
                    continue
                self.inflight += 1
                self.held[id(message)] = message
                self.delivery.push(message)


class JetStreams:
    """The JetStream side of one `NatsBroker`: streams, durables, retained topics."""

    def __init__(self, broker: NatsBroker) -> None:
        self.broker = broker
        self._subjects: list[str] | None = None
        # Topic -> retained, for the stream list in `_subjects` (cleared with it).
        self._topics: dict[str, bool] = {}
        self._watch: Any = None
        # The one read of the stream list in flight, shared by every publish that
        # waits for it (one request per refresh, not one per waiting publish).
        self._refreshing: asyncio.Future[None] | None = None
        self._dead_kv: Any = None

    def _js(self, what: str) -> Any:
        conn = self.broker._conn
        assert conn is not None
        return conn.jetstream(f"broker {what}")

    # --- which topics are retained ----------------------------------------------------

    def retained_now(self, topic: str) -> bool | None:
        """True if a stream retains `topic`; None while the stream list is not known."""
        subjects = self._subjects
        if subjects is None:
            return None
        if not subjects:
            return False
        found = self._topics.get(topic)
        if found is None:
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            found = self._topics[topic] = any(matches(s, topic) for s in subjects)
        return found

    async def retained(self, topic: str) -> bool:
        """True if a stream retains `topic`, reading the stream list if it is not known;
        `ConnectionFailed` (nothing sent) when JetStream is there but does not answer."""
        found = self.retained_now(topic)
        if found is None:
            try:
                await self.refresh()
            except ConnectionFailed as exc:
                raise ConnectionFailed(
                    f"publish: not sent, whether a stream keeps {topic!r} is unknown: {exc}"
                ) from exc
            found = self.retained_now(topic)
        return bool(found)

    async def refresh(self) -> None:
        """Read the stream list again (and watch for stream changes from now on).

        A server without JetStream has no streams: every publish is a core one.
        A JetStream that does not answer (a cluster electing its leaders after a
        server died, a frozen server) raises `ConnectionFailed` and the list stays
        unknown: taking it for "no streams" would send publishes to retained topics
        as core ones, reported as published but never acknowledged, and dropped by
        a stream that has no leader at that moment.
        """
        if self._subjects is not None:
            return
        pending = self._refreshing
        if pending is None:
            pending = self._refreshing = asyncio.ensure_future(self._read_streams())
            pending.add_done_callback(self._refreshed)
        # Shielded: a publish that gives up (cancelled) does not cancel the read the
        # others wait for. Each waiter fails with the read's error, so N publishes
        # waiting on a JetStream that does not answer fail after one timeout, not N.
        await asyncio.shield(pending)

    def _refreshed(self, done: asyncio.Future[None]) -> None:
        if self._refreshing is done:
            self._refreshing = None
        if not done.cancelled():
            done.exception()  # retrieved: each waiter raises it itself

    async def _read_streams(self) -> None:
        if self._subjects is not None:
            return
        try:
            if self._watch is None:
                nc = await self.broker._client("watch streams")

                async def changed(msg: Any) -> None:
                    del msg
                    self._forget()  # read again at the next publish

                with self.broker._errors("watch streams"):
                    self._watch = await nc.subscribe(_STREAM_ADVISORIES, cb=changed)
            infos = await self._stream_infos()
        except MicrostdError as exc:
            if isinstance(exc, ConnectionFailed) and not self._without_jetstream(exc):
                raise
            log.debug("nats: no JetStream stream list (%s); publishing core only", exc)
            self._subjects = []
            return
        self._topics.clear()
        self._subjects = [s for info in infos for s in (info.config.subjects or [])]

    def _without_jetstream(self, exc: BaseException) -> bool:
        """True if `exc` (reading the stream list failed) says there is no JetStream
        here, rather than a JetStream that did not answer in time."""
        conn = self.broker._conn
        nc = conn.nc if conn is not None else None
        info = getattr(nc, "_server_info", None)
        if isinstance(info, dict) and info and not info.get("jetstream"):
            return True  # the server's INFO does not offer JetStream
        cause = exc.__cause__
        if isinstance(cause, jerr.APIError) and cause.err_code in _NO_JETSTREAM_CODES:
            return True
        # Nobody serves the JetStream API for this account (nats-py turns the
        # "no responders" answer into a 503).
        return isinstance(cause, jerr.ServiceUnavailableError) and isinstance(
            cause.__context__, nerr.NoRespondersError
        )

    def _forget(self) -> None:
        self._subjects = None
        self._topics.clear()

    async def _stream_infos(self) -> list[Any]:
        js = self._js("list streams")
        with self.broker._errors("list streams"):
            return list(await js.streams_info())

    async def close(self) -> None:
        pending, self._refreshing = self._refreshing, None
        if pending is not None:
            pending.cancel()
        watch, self._watch = self._watch, None
        if watch is not None:
            with contextlib.suppress(Exception):
                await watch.unsubscribe()

    # --- streams ---------------------------------------------------------------------------

    async def add_stream(self, name: str, subjects: list[str], limits: StreamLimits) -> None:
        js = self._js("add stream")
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            max_age=limits.max_age or 0,
            max_msgs=limits.max_count or -1,
            max_bytes=limits.max_bytes or -1,
            # The duplicate window may not be longer than the age limit.
            duplicate_window=min(120.0, limits.max_age) if limits.max_age else 120.0,
            num_replicas=self.broker.replicas,
        )
        with self._overlap(name), self.broker._errors("add stream"):
            try:
                info = await js.stream_info(name)
                exists = True
            except jerr.NotFoundError:
                exists = False
            if exists:
                # An existing stream keeps its copies (as a bucket does): changing
                # them is an operator's decision, not a side effect of a subscribe.
                config.num_replicas = info.config.num_replicas
                await js.update_stream(config)
            else:
                await js.add_stream(config)
        self._forget()

    @contextlib.contextmanager
    def _overlap(self, name: str) -> Any:
        try:
            yield
        except MicrostdError as exc:
            cause = exc.__cause__
            if isinstance(cause, jerr.APIError) and "overlap" in str(cause.description or ""):
                raise ValueError(f"stream {name!r}: {cause.description}") from None
            raise

    async def delete_stream(self, name: str) -> None:
        js = self._js("delete stream")
        with self.broker._errors("delete stream"), contextlib.suppress(jerr.NotFoundError):
            await js.delete_stream(name)
        self._forget()

    async def delete_durable(self, stream: str, name: str) -> None:
        js = self._js("delete durable")
        with self.broker._errors("delete durable"), contextlib.suppress(jerr.NotFoundError):
            await js.delete_consumer(stream, name)

    async def stream_for(self, pattern: str) -> str:
        """The stream covering `pattern`, created (unlimited) if there is none."""
        for info in await self._stream_infos():
            if any(covers(s, pattern) for s in info.config.subjects or ()):
                return str(info.config.name)
        name = implicit_stream_name(pattern)
        try:
            await self.add_stream(name, [pattern], StreamLimits())
        except ValueError as exc:
            raise ValueError(
                f"no stream covers {pattern!r} and one of its own would overlap another"
                f" ({exc}): add a stream whose subjects cover it (broker.add_stream)"
            ) from None
        return name

    async def infos(self) -> list[StreamInfo]:
        js = self._js("stream info")
        dead = await self._dead_counts()
        out = []
        for info in await self._stream_infos():
            config, state = info.config, info.state
            if config.name.startswith(_INTERNAL_STREAMS):
                continue  # key-value buckets and object stores are streams too
            with self.broker._errors("consumer info"):
                consumers = await js.consumers_info(config.name)
            durables = tuple(
                DurableInfo(
                    stream=config.name,
                    name=c.name,
                    pattern=c.config.filter_subject or "",
                    pending=c.num_pending,
                    unacked=c.num_ack_pending,
                    redelivered=c.num_redelivered,
                    dead_lettered=dead.get(f"{config.name}.{c.name}", 0),
                    consumers=None,
                )
                for c in sorted(consumers, key=lambda c: c.name)
            )
            out.append(
                StreamInfo(
                    name=config.name,
                    subjects=tuple(config.subjects or ()),
                    limits=StreamLimits(
                        config.max_age or None,
                        config.max_msgs if config.max_msgs and config.max_msgs > 0 else None,
                        config.max_bytes if config.max_bytes and config.max_bytes > 0 else None,
                    ),
                    messages=state.messages,
                    bytes=state.bytes,
                    first_sequence=state.first_seq,
                    last_sequence=state.last_seq,
                    durables=durables,
                )
            )
        return sorted(out, key=lambda s: s.name)

    # --- dead-letter counts ----------------------------------------------------------------

    async def _bucket(self, create: bool = True) -> Any:
        if self._dead_kv is None:
            js = self._js("dead-letter counts")
            try:
                self._dead_kv = await js.key_value(DEAD_BUCKET)
            except jerr.BucketNotFoundError:
                if not create:
                    return None
                self._dead_kv = await js.create_key_value(
                    bucket=DEAD_BUCKET, replicas=self.broker.replicas
                )
        return self._dead_kv

    async def count_dead(self, stream: str, name: str) -> None:
        """Add one to the durable's dead-letter count (compare-and-set, retried)."""
        key = f"{stream}.{name}"
        try:
            kv = await self._bucket()
            for _ in range(20):
                try:
                    entry = await kv.get(key)
                except jerr.KeyNotFoundError:
                    try:
                        await kv.create(key, b"1")
                        return
                    except jerr.KeyWrongLastSequenceError:
                        continue
                    except jerr.APIError:
                        continue
                value = int(entry.value or b"0") + 1
                try:
                    await kv.update(key, str(value).encode(), last=entry.revision)
                    return
                except (jerr.KeyWrongLastSequenceError, jerr.APIError):
                    continue
        except Exception as exc:  # a count, not the message: never fail the settle
            log.debug("nats: counting a dead letter of %r failed: %s", name, exc)

    async def _dead_counts(self) -> dict[str, int]:
        try:
            kv = await self._bucket(create=False)
            if kv is None:
                return {}
            # From the stream's info, not kv.keys(): no consumer, which a cluster
            # with a server down may fail to create (see nats_kv).
            conn = self.broker._conn
            assert conn is not None
            keys = await nats_kv.kv_names(
                conn.client("broker dead-letter counts"),
                DEAD_BUCKET,
                timeout=conn.endpoint.timeouts.request,
            )
        except Exception:
            return {}
        out = {}
        for key in keys:
            with contextlib.suppress(Exception):
                out[key] = int((await kv.get(key)).value or b"0")
        return out

    # --- durables ---------------------------------------------------------------------------

    async def subscribe(
        self, pattern: str, handler: Handler, queue: str | None, options: DurableOptions
    ) -> NetworkSubscription:
        broker = self.broker
        stream = await self.stream_for(pattern)
        js = self._js("subscribe")
        name = options.durable
        await self._consumer(js, stream, name, pattern, options)
        member = _Member(self, stream, name, pattern, options)
        sub = NetworkSubscription(broker, pattern, queue)
        delivery = DurableDelivery(
            handler, settler=member.settler, report=sub.report, impl="python"
        )
        member.delivery = delivery
        sub.delivery = delivery
        try:
            with broker._errors("subscribe"):
                member.psub = await js.pull_subscribe_bind(durable=name, stream=stream)
        except BaseException:
            delivery.stop()
            raise
        member.puller = asyncio.get_running_loop().create_task(member.pull())
        member.puller.add_done_callback(_report_end)

        async def cancel(drain: bool) -> None:
            del drain
            await member.stop_taking(member.puller, _PULL_WAIT)

        async def finish() -> None:
            # What this subscriber never started went back (-NAK) in the drain.
            await member.hand_back()
            with contextlib.suppress(Exception):
                await member.psub.unsubscribe()

        sub.cancel = cancel
        sub.finish = finish
        broker._subs.add(sub)
        return sub

    async def _consumer(
        self, js: Any, stream: str, name: str, pattern: str, options: DurableOptions
    ) -> None:
        """Create the durable consumer, or check and update an existing one."""
        kind, when, seq = options.start_fields()
        policy = {
            "new": api.DeliverPolicy.NEW,
            "first": api.DeliverPolicy.ALL,
            "time": api.DeliverPolicy.BY_START_TIME,
            "sequence": api.DeliverPolicy.BY_START_SEQUENCE,
        }[kind]
        config = api.ConsumerConfig(
            durable_name=name,
            filter_subject=pattern,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait,
            # Unlimited on the server: see the module docstring.
            max_deliver=-1,
            deliver_policy=policy,
            opt_start_time=(
                dt.datetime.fromtimestamp(when, dt.timezone.utc) if kind == "time" else None
            ),
            opt_start_seq=seq if kind == "sequence" else None,
            max_ack_pending=-1,
        )
        with self.broker._errors("durable"):
            try:
                existing = await js.consumer_info(stream, name)
            except jerr.NotFoundError:
                existing = None
            if existing is None:
                await js.add_consumer(stream, config)
                return
            if existing.config.filter_subject != pattern:
                raise ValueError(
                    f"durable {name!r} of stream {stream!r} filters"
                    f" {existing.config.filter_subject!r}, not {pattern!r}: use another durable"
                    " name, or delete it first"
                )
            if (existing.config.ack_wait, existing.config.max_deliver) != (
                config.ack_wait,
                config.max_deliver,
            ):
                # The position stays; only what the server allows to change is updated.
                update = existing.config
                update.ack_wait = config.ack_wait
                update.max_deliver = config.max_deliver
                try:
                    await js.add_consumer(stream, update)
                except jerr.APIError as exc:
                    log.warning("nats durable %r: its settings were not updated: %s", name, exc)


def _report_end(task: asyncio.Task[None]) -> None:
    # The pull loop only ends when told to; anything else is a bug to see in the log.
    if not task.cancelled() and task.exception() is not None:
        log.error("nats durable: the pull loop ended", exc_info=task.exception())
