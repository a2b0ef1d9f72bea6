"""Durable subscriptions of `redis://`: Redis Streams and consumer groups.

Layout (every key under the broker's `prefix`; on Redis Cluster under
``{prefix}``, one hash tag):

- `streams`: a hash, stream name -> JSON `{"subjects": [...], "max_age",
  "max_count", "max_bytes"}`.
- `stream:{name}`: the Redis stream; an entry holds the topic (`t`) and the
  message's envelope (`e`, the bytes core subscribers get: headers, content
  type, body). `streambytes:{name}` counts its envelopes' bytes (what
  `max_bytes` limits here).
- `durable:{stream}:{name}`: the durable's pattern and dead-letter count.

Publishing. Every publish (core or not) is one Lua script: it PUBLISHes the
envelope for core subscribers, then XADDs the message to the stream whose
subjects match the topic (if any) and evicts the oldest entries past its
limits — atomically, so from the moment `add_stream` (or a durable
subscribe) returns, every publish of every process is kept. The script
computes its stream keys; on Redis Cluster every key of the broker carries
one hash tag (`RedisBroker`: the prefix, or ``microstd:broker:`` when it is
empty, in braces), so they all live in the slot of the stream list and the
script can reach them: a broker's streams live on one shard.

Wildcard durables map onto streams like this: a durable subscription
`orders.*` reads the stream whose subjects cover `orders.*` (`orders.>`
say, or one of its own created for the pattern), as a consumer group named
after the durable; entries of that stream its pattern does not match are
acknowledged and skipped as they are read. So a stream holds every topic of
its subjects once, and each durable of it is one consumer group.

Delivery. A subscriber is a consumer of the group (`XREADGROUP ... >` for
new entries, up to its room). `ack_wait` is the pending entry's idle time:
every `claim_interval` a subscriber looks at the entries idle longer than
`ack_wait` (`XPENDING IDLE`) and claims them (`XCLAIM`), leaving its own
to the others while another consumer of the group is alive. The delivery
count is the pending entry's. `ack` / `term` are XACK; `nack(delay)`
re-claims the entry for itself with a delivery time set so that it becomes
claimable after the delay; `in_progress` resets its idle time.

Not offered: starting a durable at a stream sequence (entry ids are times:
`start` may be a datetime instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from microstd.broker._durable import (
    DurableInfo,
    DurableOptions,
    StreamInfo,
    StreamLimits,
    covers,
    implicit_stream_name,
    refuse_overlap,
)
from microstd.broker._durable_delivery import DurableDelivery, Settler
from microstd.broker._durable_member import PullMember, PullMessage
from microstd.broker._network import MalformedEnvelope, NetworkSubscription, parse_envelope
from microstd.broker._subjects import matches
from microstd.broker.base import OCTET_STREAM, Handler, log
from microstd.errors import NotSupported

if TYPE_CHECKING:
    from microstd.broker.redis import RedisBroker

__all__ = ["PUBLISH_SCRIPT", "RedisDurableMessage", "RedisStreams"]

#: The largest sequence part of a stream entry id.
_MAX_SEQ = 18446744073709551615

PUBLISH_SCRIPT = """
-- KEYS[1] the streams hash; ARGV: channel, envelope, the keys' prefix, topic.
-- The stream keys it computes share KEYS[1]'s hash slot on a cluster (one hash
-- tag for all the broker's keys), so the script runs there too.
-- Returns the new entry id, or false when no stream retains the topic.
local specs = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
if #specs == 0 then return false end
local topic = ARGV[4]
local function split(s)
  local t = {}
  for part in string.gmatch(s, '[^.]+') do t[#t + 1] = part end
  return t
end
local tokens = split(topic)
local function matches(pattern)
  local p = split(pattern)
  for i = 1, #p do
    if p[i] == '>' then return #tokens >= i end
    if i > #tokens then return false end
    if p[i] ~= '*' and p[i] ~= tokens[i] then return false end
  end
  return #tokens == #p
end
for i = 1, #specs, 2 do
  local spec = cjson.decode(specs[i + 1])
  for _, subject in ipairs(spec.subjects) do
    if matches(subject) then
      local key = ARGV[3] .. 'stream:' .. specs[i]
      local bkey = ARGV[3] .. 'streambytes:' .. specs[i]
      local id = redis.call('XADD', key, '*', 't', topic, 'e', ARGV[2])
      redis.call('INCRBY', bkey, #ARGV[2])
      -- Evict the oldest past the limits; the newest survives count and bytes.
      local now_ms = 0
      if spec.max_age then
        local now = redis.call('TIME')
        now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
      end
      while spec.max_count or spec.max_bytes or spec.max_age do
        local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
        if #head == 0 then break end
        local len = redis.call('XLEN', key)
        local bytes = tonumber(redis.call('GET', bkey) or '0')
        local over = len > 1 and ((spec.max_count and len > spec.max_count)
                                  or (spec.max_bytes and bytes > spec.max_bytes))
        local hid = head[1][1]
        local old = spec.max_age and
            tonumber(string.match(hid, '^(%d+)')) < now_ms - spec.max_age * 1000
        if not over and not old then break end
        local fields = head[1][2]
        local size = 0
        for j = 1, #fields, 2 do
          if fields[j] == 'e' then size = #fields[j + 1] end
        end
        redis.call('XDEL', key, hid)
        redis.call('DECRBY', bkey, size)
      end
      return id
    end
  end
end
return false
"""


# How long a deletion is remembered (deleted_key): longer than any subscriber
# of what was deleted can go without reading.
_DELETED_FOR = 24 * 3600


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class RedisDurableMessage(PullMessage):
    """A delivery of a durable subscription on `redis://`."""

    __slots__ = ("entry",)

    def __init__(self, entry: str, fields: dict[bytes, bytes], count: int, member: _Member) -> None:
        try:
            _, headers, content_type, body = parse_envelope(fields.get(b"e"))
        except MalformedEnvelope as exc:
            # Anyone who can write to the server can XADD: handled as a poison message.
            log.warning("redis durable %r: entry %s is malformed: %s", member.name, entry, exc)
            headers, content_type, body = {}, OCTET_STREAM, b""
        topic = _text(fields.get(b"t", b""))
        msgid = f"{member.stream}:{entry}"
        super().__init__(topic, body, headers, content_type, msgid, count, member)
        self.entry = entry


class _Member(PullMember):
    """One subscriber of a durable: a consumer of its group."""

    def __init__(
        self,
        streams: RedisStreams,
        stream: str,
        spec: dict[str, Any],
        name: str,
        pattern: str,
        options: DurableOptions,
        consumer: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(options, Settler(options, streams.broker._publish_raw, loop))
        self.streams = streams
        self.redis = streams.broker._redis
        self.stream = stream
        self.key = streams.key(f"stream:{stream}")
        self.name = name
        self.pattern = pattern
        self.limits = _limits(spec)
        # Written back if the stream's definition is lost with its group (_recreate).
        self.spec = json.dumps(spec)
        self.told_deleted = False
        self.consumer = consumer
        self.ack_wait_ms = max(1, int(options.ack_wait * 1000))
        # How often expired deliveries are looked for, and how long one read blocks.
        self.interval = min(0.25, options.ack_wait / 4)
        self.reader: asyncio.Task[None] | None = None
        self.next_claim = 0.0
        self.acks: list[str] = []
        self.dead = 0

    def send(self, message: RedisDurableMessage, how: str, delay: float, dead: bool) -> None:
        self.settled(message, how)
        if how in ("ack", "term"):
            # Acks go out together, in one XACK per turn of the loop.
            self.acks.append(message.entry)
            if dead:
                self.dead += 1
            if len(self.acks) == 1:
                self.spawn(self._send_acks())
            return
        self.spawn(self._send(message, how, delay))

    async def _send_acks(self) -> None:
        await asyncio.sleep(0)  # let the other acks of this turn join
        ids, self.acks = self.acks, []
        dead, self.dead = self.dead, 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.key, self.name, *ids)
            if dead:
                pipe.hincrby(self.streams.durable_key(self.stream, self.name), "dead", dead)
            await pipe.execute()
        except Exception as exc:
            # Unacked, so claimed again after ack_wait: at least once still holds.
            log.debug("redis durable %r: acking %d failed: %s", self.name, len(ids), exc)

    async def _send(self, message: RedisDurableMessage, how: str, delay: float) -> None:
        group = self.name
        try:
            if how == "progress":
                await self.redis.xclaim(
                    self.key, group, self.consumer, 0, [message.entry], justid=True
                )
            else:
                # Becomes claimable (idle >= ack_wait) once `delay` has passed.
                when = int(time.time() * 1000) + int(delay * 1000) - self.ack_wait_ms
                count = message.delivery_count - (1 if how == "release" else 0)
                await self.redis.xclaim(
                    self.key,
                    group,
                    self.consumer,
                    0,
                    [message.entry],
                    idle=None,
                    time=when,
                    retrycount=count,
                    justid=True,
                )
                self.next_claim = 0.0  # a nacked message may be for us again at once
        except Exception as exc:
            # Unsettled, so claimed again after ack_wait: at least once still holds.
            log.debug("redis durable %r: %s failed: %s", group, how, exc)

    async def run(self) -> None:
        """Read new entries and claim expired ones, up to the room, until stopped."""
        while not self.stopping:
            want = await self.room_for()
            if not want:
                continue
            try:
                if time.monotonic() >= self.next_claim:
                    self.next_claim = time.monotonic() + self.interval
                    if await self._claim(want):
                        continue
                reply = await self.redis.xreadgroup(
                    self.name,
                    self.consumer,
                    {self.key: ">"},
                    count=want,
                    block=max(1, int(self.interval * 1000)),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                if "NOGROUP" in str(exc):
                    await self._recreate()
                    continue
                log.warning("redis durable %r: reading failed, retrying: %s", self.name, exc)
                await asyncio.sleep(0.5)
                continue
            for _key, entries in reply or ():
                for entry, fields in entries:
                    self._take(_text(entry), fields, 1)

    async def _recreate(self) -> None:
        """The group is gone while this member reads: a failover promoted a replica
        that never had it (asynchronous replication), or the server lost its data
        (FLUSHALL, a restart without persistence). Reading would fail with NOGROUP
        for ever: the stream's definition, the durable's record and its group are
        written again (each only if still missing), the group from the start of
        what the stream holds now, so nothing still in it is skipped (at least
        once: some of it may be delivered again). What was published while the
        stream's definition was missing was not retained. A stream or durable
        deleted on purpose is left deleted: its subscriber reads nothing more."""
        streams = self.streams
        try:
            deleted = await self.redis.exists(
                streams.deleted_key(self.stream), streams.deleted_key(self.stream, self.name)
            )
            if deleted:
                if not self.told_deleted:
                    self.told_deleted = True
                    log.warning(
                        "redis durable %r: stream %r or the durable was deleted: nothing to read",
                        self.name,
                        self.stream,
                    )
                await asyncio.sleep(0.5)
                return
            log.warning(
                "redis durable %r: its consumer group is gone (failover, lost data):"
                " creating it again from the start of stream %r",
                self.name,
                self.stream,
            )
            await self.redis.hsetnx(streams.key("streams"), self.stream, self.spec)
            meta_key = streams.durable_key(self.stream, self.name)
            await self.redis.hsetnx(meta_key, "pattern", self.pattern)
            await self.redis.xgroup_create(self.key, self.name, id="0", mkstream=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):  # another member was first: as good
                log.warning("redis durable %r: creating it again failed: %s", self.name, exc)
                await asyncio.sleep(0.5)

    def _take(self, entry: str, fields: dict[bytes, bytes] | None, count: int) -> None:
        if fields is None:
            # Deleted by a limit while pending: nothing to deliver.
            self.spawn(self.redis.xack(self.key, self.name, entry))
            return
        message = RedisDurableMessage(entry, fields, count, self)
        self.inflight += 1
        old = self.limits.max_age is not None and (
            _ms(entry) < (time.time() - self.limits.max_age) * 1000
        )
        if old or not matches(self.pattern, message.topic):
            message.settle("ack")  # expired, or a topic of the stream this durable skips
            return
        if self.stopping:
            message.settle("release")  # read while stopping: straight back
            return
        self.held[id(message)] = message
        assert self.delivery is not None
        self.delivery.push(message)

    async def _claim(self, want: int) -> bool:
        """Claim deliveries idle past ack_wait; True if any were claimed."""
        pending = await self.redis.xpending_range(
            self.key, self.name, "-", "+", want, idle=self.ack_wait_ms
        )
        if not pending:
            return False
        others = await self._others_alive()
        chosen = [p for p in pending if _text(p["consumer"]) != self.consumer or not others]
        if not chosen:
            return False
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in chosen}
        claimed = await self.redis.xclaim(
            self.key, self.name, self.consumer, self.ack_wait_ms, list(counts)
        )
        got = {_text(entry): fields for entry, fields in claimed}
        for entry, before in counts.items():
            if entry in got:
                self._take(entry, got[entry], before + 1)
            else:
                # Claimed by another meanwhile, or deleted by a limit (then it
                # would stay pending for ever unless acked).
                exists = await self.redis.xrange(self.key, entry, entry)
                if not exists:
                    await self.redis.xack(self.key, self.name, entry)
        return bool(got)

    async def _others_alive(self) -> bool:
        consumers = await self.redis.xinfo_consumers(self.key, self.name)
        horizon = max(3000, self.ack_wait_ms)
        return any(
            _text(c["name"]) != self.consumer and int(c["idle"]) < horizon for c in consumers
        )


class RedisStreams:
    """The Redis Streams side of one `RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self._script: Any = None
        self._ids = 0
        # Publishes waiting for the next pipeline, and whether one is being sent.
        self._queued: list[tuple[list[Any], asyncio.Future[None]]] = []
        self._sending = False
        self._sender: asyncio.Task[None] | None = None
        self._loaded = False

    def key(self, name: str) -> str:
        return f"{self.broker._keys}{name}"

    def durable_key(self, stream: str, name: str) -> str:
        return self.key(f"durable:{stream}:{name}")

    def deleted_key(self, stream: str, durable: str | None = None) -> str:
        """Set for a day when a stream (or one durable) is deleted on purpose, so
        that its subscribers, finding their group gone, do not make it again as
        they do after a loss of data (`_Member._recreate`)."""
        return self.key(f"deleted:{stream}" + (f":{durable}" if durable is not None else ""))

    # --- publishing ------------------------------------------------------------------------

    async def publish(
        self, topic: str, envelope: bytes, headers: dict[str, str], content_type: str, data: bytes
    ) -> None:
        """PUBLISH for core subscribers and XADD to the stream retaining `topic`, at once.

        Publishes made while another batch is on the wire wait and go together
        in the next pipeline: one round trip for all of them (redis-py would
        otherwise take a pool connection for each), in the order they were made.
        """
        del headers, content_type, data  # all in the envelope
        args = [self.broker._prefix + topic, envelope, self.broker._keys, topic]
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queued.append((args, done))
        if not self._sending:
            self._sending = True
            self._sender = loop.create_task(self._send_queued())
        await done

    async def _send_queued(self) -> None:
        redis = self.broker._redis
        if self._script is None:
            self._script = redis.register_script(PUBLISH_SCRIPT)
        keys = [self.key("streams")]
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    with self.broker._errors("publish"):
                        try:
                            await self._evalsha(redis, keys, batch)
                        except NoScriptError:
                            # A restarted or flushed server forgot the script: load it again.
                            self._loaded = False
                            await self._evalsha(redis, keys, batch)
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._sending = False

    async def _evalsha(
        self, redis: Any, keys: list[str], batch: list[tuple[list[Any], asyncio.Future[None]]]
    ) -> None:
        # EVALSHA straight into the pipeline: redis-py's Script object costs an
        # await per command, a third of a publish's client time.
        sha = self._script.sha
        if not self._loaded:
            await redis.script_load(PUBLISH_SCRIPT)
            self._loaded = True
        if len(batch) == 1:
            await redis.evalsha(sha, len(keys), *keys, *batch[0][0])
            return
        if self.broker._endpoint.cluster is not None:
            # redis-py's cluster pipeline refuses EVALSHA: one at a time, in order
            # (a round trip each; concurrent calls could overtake one another). Each
            # is acknowledged as it succeeds: a failure fails only the rest.
            for args, done in batch:
                await redis.evalsha(sha, len(keys), *keys, *args)
                if not done.done():
                    done.set_result(None)
            return
        pipe = redis.pipeline(transaction=False)
        for args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        await pipe.execute()

    # --- streams ---------------------------------------------------------------------------

    async def _specs(self) -> dict[str, dict[str, Any]]:
        # Every caller (streams(), publish, add_stream) lets ConnectionFailed through:
        # a raw redis error here escaped as redis.ConnectionError (a reset connection).
        with self.broker._errors("stream list"):
            raw = await self.broker._redis.hgetall(self.key("streams"))
        out = {}
        for name, spec in raw.items():
            with contextlib.suppress(ValueError):
                out[_text(name)] = json.loads(spec)
        return out

    async def add_stream(self, name: str, subjects: list[str], limits: StreamLimits) -> None:
        specs = await self._specs()
        refuse_overlap(name, subjects, ((n, s.get("subjects", [])) for n, s in specs.items()))
        with self.broker._errors("add stream"):
            await self.broker._redis.hset(self.key("streams"), name, _spec(subjects, limits))
            await self.broker._redis.delete(self.deleted_key(name))

    async def delete_stream(self, name: str) -> None:
        redis = self.broker._redis
        with self.broker._errors("delete stream"):
            # Marked first: a subscriber that sees its group gone must find the mark.
            await redis.set(self.deleted_key(name), 1, ex=_DELETED_FOR)
            await redis.hdel(self.key("streams"), name)
            durables = [k async for k in redis.scan_iter(match=self.durable_key(name, "*"))]
            await redis.delete(
                self.key(f"stream:{name}"), self.key(f"streambytes:{name}"), *durables
            )

    async def delete_durable(self, stream: str, name: str) -> None:
        redis = self.broker._redis
        with self.broker._errors("delete durable"):
            await redis.set(self.deleted_key(stream, name), 1, ex=_DELETED_FOR)
            with contextlib.suppress(Exception):
                await redis.xgroup_destroy(self.key(f"stream:{stream}"), name)
            await redis.delete(self.durable_key(stream, name))

    async def stream_for(self, pattern: str) -> tuple[str, dict[str, Any]]:
        """The stream retaining `pattern` (made for it if none does) and its definition."""
        specs = await self._specs()
        for name, spec in specs.items():
            if any(covers(s, pattern) for s in spec.get("subjects", [])):
                return name, spec
        name = implicit_stream_name(pattern)
        try:
            await self.add_stream(name, [pattern], StreamLimits())
        except ValueError as exc:
            raise ValueError(
                f"no stream covers {pattern!r} and one of its own would overlap another"
                f" ({exc}): add a stream whose subjects cover it (broker.add_stream)"
            ) from None
        return name, {"subjects": [pattern]}

    async def infos(self) -> list[StreamInfo]:
        redis = self.broker._redis
        out = []
        for name, spec in sorted((await self._specs()).items()):
            key = self.key(f"stream:{name}")
            with self.broker._errors("stream info"):
                length = await redis.xlen(key)
                size = int(await redis.get(self.key(f"streambytes:{name}")) or 0)
                try:
                    groups = await redis.xinfo_groups(key)
                except Exception:
                    groups = []
                durables = []
                for group in groups:
                    durable = _text(group["name"])
                    meta = await redis.hgetall(self.durable_key(name, durable))
                    pending = await redis.xpending_range(key, durable, "-", "+", 1000)
                    consumers = await redis.xinfo_consumers(key, durable)
                    lag = group.get("lag")
                    durables.append(
                        DurableInfo(
                            stream=name,
                            name=durable,
                            pattern=_text(meta.get(b"pattern", b"")),
                            pending=int(lag) if lag is not None else None,
                            unacked=int(group["pending"]),
                            redelivered=sum(1 for p in pending if int(p["times_delivered"]) > 1),
                            dead_lettered=int(meta.get(b"dead", 0)),
                            consumers=sum(1 for c in consumers if int(c["idle"]) < 5000),
                        )
                    )
            out.append(
                StreamInfo(
                    name=name,
                    subjects=tuple(spec.get("subjects", [])),
                    limits=_limits(spec),
                    messages=length,
                    bytes=size,
                    durables=tuple(sorted(durables, key=lambda d: d.name)),
                )
            )
        return out

    # --- durables ----------------------------------------------------------------------------

    async def subscribe(
        self, pattern: str, handler: Handler, queue: str | None, options: DurableOptions
    ) -> NetworkSubscription:
        if isinstance(options.start, int):
            raise NotSupported("redis:// cannot start a durable at a sequence (use a datetime)")
        broker = self.broker
        redis = broker._redis
        stream, spec = await self.stream_for(pattern)
        key = self.key(f"stream:{stream}")
        name = options.durable
        with broker._errors("subscribe"):
            meta_key = self.durable_key(stream, name)
            await redis.hsetnx(meta_key, "pattern", pattern)
            recorded = _text(await redis.hget(meta_key, "pattern"))
            if recorded != pattern:
                raise ValueError(
                    f"durable {name!r} of stream {stream!r} filters {recorded!r}, not {pattern!r}:"
                    " use another durable name, or delete it first"
                )
            kind, when, _ = options.start_fields()
            start = {"new": "$", "first": "0"}.get(kind)
            if start is None:
                ms = int(when * 1000) - 1
                start = f"{ms}-{_MAX_SEQ}" if ms >= 0 else "0"
            try:
                await redis.xgroup_create(key, name, id=start, mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            await redis.delete(self.deleted_key(stream, name))
        self._ids += 1
        consumer = f"{broker._uid}-{self._ids}"
        member = _Member(self, stream, spec, name, pattern, options, consumer)
        sub = NetworkSubscription(broker, pattern, queue)
        delivery = DurableDelivery(
            handler, settler=member.settler, report=sub.report, impl="python"
        )
        member.delivery = delivery
        sub.delivery = delivery
        member.reader = asyncio.get_running_loop().create_task(member.run())
        member.reader.add_done_callback(_report_end)

        async def cancel(drain: bool) -> None:
            del drain
            # The read under way blocks at most `interval`; what it returns goes straight back.
            await member.stop_taking(member.reader, member.interval)

        async def finish() -> None:
            await member.hand_back()
            # A consumer that still owns entries must stay (deleting it would make
            # them unclaimable): the others claim them, and it holds nothing after.
            with contextlib.suppress(Exception):
                mine = await redis.xpending_range(key, name, "-", "+", 1, consumername=consumer)
                if not mine:
                    await redis.xgroup_delconsumer(key, name, consumer)

        sub.cancel = cancel
        sub.finish = finish
        broker._subs.add(sub)
        return sub


def _spec(subjects: list[str], limits: StreamLimits) -> str:
    """A stream's definition, as the `streams` hash (and the publish script) hold it."""
    spec: dict[str, object] = {"subjects": subjects}
    for field, value in (
        ("max_age", limits.max_age),
        ("max_count", limits.max_count),
        ("max_bytes", limits.max_bytes),
    ):
        if value is not None:
            spec[field] = value
    return json.dumps(spec)


def _limits(spec: dict[str, Any]) -> StreamLimits:
    return StreamLimits(spec.get("max_age"), spec.get("max_count"), spec.get("max_bytes"))


def _report_end(task: asyncio.Task[None]) -> None:
    # The read loop only ends when told to; anything else is a bug to see in the log.
    if not task.cancelled() and task.exception() is not None:
        log.error("redis durable: the read loop ended", exc_info=task.exception())
