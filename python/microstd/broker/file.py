"""`file://PATH`: a broker in one SQLite database file, shared by the processes of a machine.

    broker = microstd.broker.open("file:///var/lib/app/broker.db")   # absolute path
    broker = microstd.broker.open("file://broker.db")                # relative to the cwd

The file is a log of messages in WAL mode. A publish is one row, committed
before `publish` returns; concurrent publishes share a commit. With the
default `synchronous="normal"` a committed message survives the process
being killed; `synchronous="full"` also survives an OS crash or power loss,
at the price of one fsync per commit.

- Durable subscriptions keep their streams, positions and unacked messages
  in the file: they survive every process restarting, and the processes
  using a durable share its messages (see `docs/broker.md`). A process
  that dies holding messages leaves them to the others after `ack_wait`.
- Core pub/sub works across the processes too: each process reads the log
  every `poll_interval` seconds (default 0.02; at once for its own
  publishes), so a subscriber sees what is published after it subscribed.
  Messages no stream retains are forgotten after `core_window` seconds
  (default 10): a process that stalls longer misses them (at most once).
  Queue groups are exactly once across processes (a claim row per message
  and group), shared fairly (the member a message hashes to claims first,
  the others after `group_fallback` seconds).

All SQLite work of a process runs on one thread per file
(`_file_engine.FileEngine`), shared by every `FileBroker` of that process
on the same file.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microstd._backends import ParsedURL
from microstd.broker import _file_engine as engines
from microstd.broker import _file_sql as sql
from microstd.broker._delivery import Delivery, Options, report_error
from microstd.broker._durable import (
    DurableOptions,
    StreamInfo,
    StreamLimits,
    declared_stream,
    implicit_stream_name,
    validate_name,
)
from microstd.broker._durable_delivery import DurableDelivery, Settler
from microstd.broker._memory_durable import to_info
from microstd.broker._streams_pure import message_size
from microstd.broker._subjects import validate_pattern
from microstd.broker.base import (
    EncodingBroker,
    ErrorHook,
    Handler,
    Message,
    Subscription,
)
from microstd.errors import Closed, InvalidTopic

__all__ = ["FileBroker"]

_SYNC_MODES = {"off", "normal", "full", "extra"}
_NUMBERS = ("poll_interval", "core_window", "heartbeat", "group_fallback", "timeout")


class _Sub(Subscription):
    """A subscription of a `FileBroker`: core or durable."""

    def __init__(self, broker: FileBroker, pattern: str, queue: str | None) -> None:
        self._broker = broker
        self.pattern = pattern
        self.queue = queue
        self.delivery: Delivery | None = None
        self.core: engines.CoreSub | None = None
        self.member: engines.DurableMember | None = None
        self.stream = ""
        self.durable = ""
        self._done = False

    def __repr__(self) -> str:
        if self.member is not None:
            return f"Subscription(pattern={self.pattern!r}, durable={self.durable!r})"
        return f"Subscription(pattern={self.pattern!r}, queue={self.queue!r})"

    @property
    def dropped(self) -> int:
        return self.delivery.dropped if self.delivery is not None else 0

    def report(self, exc: BaseException) -> None:
        report_error(exc, self, self._broker._opts.hook)  # type: ignore[arg-type]

    async def unsubscribe(self, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        broker = self._broker
        broker._subs.discard(self)
        engine = broker._engine
        wait = broker._opts.drain_timeout if timeout is None else timeout
        if engine is None:
            return
        if self.core is not None:
            await asyncio.wrap_future(engine.local(engines.FileEngine.remove_core, self.core))
            if self.delivery is not None:
                await self.delivery.drain(wait)
            return
        member = self.member
        assert member is not None
        await asyncio.wrap_future(engine.local(engines.FileEngine.pause_member, member))
        if isinstance(self.delivery, DurableDelivery):
            await self.delivery.drain(wait)
            await self.delivery.settler.flush()
        await asyncio.wrap_future(
            engine.local(engines.FileEngine.remove_member, self.stream, self.durable, member)
        )


class FileBroker(EncodingBroker):
    """The async broker on a SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        poll_interval: float = 0.02,
        core_window: float = 10.0,
        heartbeat: float = 1.0,
        group_fallback: float = 0.25,
        timeout: float = 5.0,
        **options: Any,
    ) -> None:
        if str(synchronous).lower() not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {sorted(_SYNC_MODES)}")
        for name, value in zip(
            _NUMBERS, (poll_interval, core_window, heartbeat, group_fallback, timeout), strict=True
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be positive seconds, got {value!r}")
        self.path = Path(path)
        self._engine_options = {
            "synchronous": str(synchronous).upper(),
            "poll_interval": float(poll_interval),
            "core_window": float(core_window),
            "heartbeat": float(heartbeat),
            "group_fallback": float(group_fallback),
            "timeout": float(timeout),
        }
        self._opts = Options(**options)
        self._engine: engines.FileEngine | None = None
        self._subs: set[_Sub] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: ParsedURL, **options: Any) -> FileBroker:
        """`file:///abs/path.db` or `file://relative/path.db`; options from the query."""
        path = url.netloc_name + url.path
        if not path:
            raise ValueError("file:// URL needs a path, e.g. file:///var/lib/app/broker.db")
        merged: dict[str, Any] = {**url.query, **options}
        for name in (*_NUMBERS, "drain_timeout"):
            if isinstance(merged.get(name), str):
                try:
                    merged[name] = float(merged[name])
                except ValueError as exc:
                    raise ValueError(f"URL option {name}={merged[name]!r} is not a number") from exc
        if isinstance(merged.get("max_pending"), str):
            merged["max_pending"] = int(merged["max_pending"])
        return cls(path, **merged)

    def __repr__(self) -> str:
        return f"FileBroker({str(self.path)!r})"

    async def connect(self) -> None:
        if self._closed:
            raise Closed("broker is closed")
        if self._engine is None:
            engine = await asyncio.to_thread(
                engines.acquire, str(self.path), **self._engine_options
            )
            if self._engine is None:
                self._engine = engine
            else:
                engines.release(engine)  # a concurrent connect() won

    async def _ready(self) -> engines.FileEngine:
        if self._closed:
            raise Closed("broker is closed")
        if self._engine is None:
            await self.connect()
        assert self._engine is not None
        return self._engine

    def on_error(self, hook: ErrorHook | None) -> None:
        self._opts.hook = hook

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
        if queue is not None and (not queue or any(c.isspace() for c in queue)):
            raise InvalidTopic("queue names must be non-empty and without whitespace")
        if not callable(handler):
            raise TypeError("handler must be callable")
        durable_options = DurableOptions.parse(pattern, durable, options)
        engine = await self._ready()
        sub = _Sub(self, pattern, queue)
        if durable_options is None:
            delivery = Delivery(
                handler,
                max_pending=self._opts.max_pending,
                overflow=self._opts.overflow,
                report=sub.report,
            )
            sub.delivery = delivery
            sub.core = engines.CoreSub(pattern, queue, delivery.push)
            await asyncio.wrap_future(engine.local(engines.FileEngine.add_core, sub.core))
        else:
            await self._subscribe_durable(engine, sub, handler, durable_options)
        self._subs.add(sub)
        return sub

    async def _subscribe_durable(
        self,
        engine: engines.FileEngine,
        sub: _Sub,
        handler: Handler,
        options: DurableOptions,
    ) -> None:
        pattern = sub.pattern
        streams = await asyncio.wrap_future(engine.local(engines.FileEngine.stream_list))
        found = sql.covering(streams, pattern)
        if found is not None:
            stream = found.name
        else:
            stream = implicit_stream_name(pattern)
            try:
                await asyncio.wrap_future(
                    engine.call(sql.add_stream, stream, [pattern], StreamLimits(), 0.0)
                )
            except ValueError as exc:
                raise ValueError(
                    f"no stream covers {pattern!r} and one of its own would overlap another"
                    f" ({exc}): add a stream whose subjects cover it (broker.add_stream)"
                ) from None
        await asyncio.wrap_future(
            engine.call(sql.open_durable, stream, options.durable, pattern, options.start_fields())
        )
        settler = Settler(options, self._publish_raw, asyncio.get_running_loop())
        delivery = DurableDelivery(handler, settler=settler, report=sub.report, impl="python")
        sub.delivery = delivery
        sub.stream, sub.durable = stream, options.durable
        sub.member = engines.DurableMember(delivery.push, options.max_inflight, settler)
        await asyncio.wrap_future(
            engine.local(
                engines.FileEngine.add_member,
                stream,
                options.durable,
                pattern,
                options.ack_wait,
                sub.member,
            )
        )

    async def _publish_raw(
        self, topic: str, data: bytes, headers: dict[str, str], content_type: str
    ) -> None:
        engine = await self._ready()
        size = message_size(Message(topic, data, headers, content_type))
        # Subscribers' queues are filled from the engine's thread, so a full one
        # holds up that thread's reading of the log, not this publisher.
        await asyncio.wrap_future(engine.publish(topic, data, headers, content_type, size))

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
        engine = await self._ready()
        await asyncio.wrap_future(engine.call(sql.add_stream, name, patterns, limits, time.time()))
        return await self._added_stream(name)

    async def streams(self) -> list[StreamInfo]:
        engine = await self._ready()
        raw = await asyncio.wrap_future(engine.call(sql.info, time.time()))
        return [to_info(r) for r in raw]

    async def delete_stream(self, name: str) -> None:
        engine = await self._ready()
        await asyncio.wrap_future(engine.call(sql.delete_stream, validate_name(name, "stream")))

    async def delete_durable(self, stream: str, name: str) -> None:
        engine = await self._ready()
        await asyncio.wrap_future(
            engine.call(
                sql.delete_durable, validate_name(stream, "stream"), validate_name(name, "durable")
            )
        )

    async def close(self) -> None:
        if self._closed:
            return
        try:
            subs = list(self._subs)
            await asyncio.gather(*(s.unsubscribe() for s in subs), return_exceptions=True)
        finally:
            self._closed = True
            engine, self._engine = self._engine, None
            if engine is not None:
                await asyncio.to_thread(engines.release, engine)
