"""Durable messaging on the network backends against their raw clients doing the same work.

One round: publish `batch` messages to a retained topic with every publish
in flight at once (each returns on the engine's acknowledgement: JetStream
PubAck, XADD, RabbitMQ publisher confirm), while one durable consumer
receives them and acks each; the round ends when all are acked. Messages
per second, end to end. The raw side is the client library used well:

- nats-py: `js.publish` for each message (all in flight), one durable pull
  consumer fetching up to 256 at a time and acking each message;
- redis-py: the batch's XADDs in one pipeline, one consumer group read with
  XREADGROUP COUNT 256 and each read's ids acked in one XACK;
- aio-pika: publishes with confirms (all in flight) to a topic exchange
  bound to a durable queue, consumed with prefetch 256 and each message acked.

The microstd side is `broker.publish` (all in flight) and a durable
subscription whose handler returns (auto ack). Each case checks, before it
is timed, that every message arrived once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from microstd.bench.runner import Case

__all__ = ["cases"]

AREA = "broker"
#: Messages each consumer may hold unacked (the raw clients' fetch / prefetch too).
WINDOW = 256


class _Round:
    """Drives rounds of `batch` publishes on a private event loop."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.loop: asyncio.AbstractEventLoop | None = None
        self.seen = 0
        self.target = 0
        self.done: asyncio.Event | None = None
        self.tag = uuid.uuid4().hex[:8]

    def got(self, n: int = 1) -> None:
        self.seen += n
        if self.seen >= self.target and self.done is not None:
            self.done.set()

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.done = asyncio.Event()
        await self.start()

    async def start(self) -> None:
        raise NotImplementedError

    async def publish_all(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def _round(self) -> int:
        assert self.done is not None
        self.done.clear()
        before = self.seen
        self.target = before + self.batch
        await self.publish_all()
        await asyncio.wait_for(self.done.wait(), 60)
        return self.seen - before

    def __call__(self) -> object:
        if self.loop is None:
            self.setup()
        assert self.loop is not None
        return self.loop.run_until_complete(self._round())

    def teardown(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.stop())
            self.loop.close()
            self.loop = None


class _Microstd(_Round):
    """`broker.publish` all in flight; a durable subscription, auto ack."""

    def __init__(self, url: str, batch: int) -> None:
        super().__init__(batch)
        self.url = url
        self.broker: Any = None
        self.sub: Any = None

    async def start(self) -> None:
        import microstd.broker

        self.broker = microstd.broker.open(self.url)
        await self.broker.connect()
        stream = f"bench{self.tag}"
        if not self.url.startswith("amqp"):
            await self.broker.add_stream(stream, f"bench.{self.tag}.>")

        def handler(m: Any) -> None:
            self.got()

        self.sub = await self.broker.subscribe(
            f"bench.{self.tag}.>", handler, durable=f"d{self.tag}", max_inflight=WINDOW
        )

    async def publish_all(self) -> None:
        publish = self.broker.publish
        topic = f"bench.{self.tag}.x"
        await asyncio.gather(*(publish(topic, b"payload") for _ in range(self.batch)))

    async def stop(self) -> None:
        # The subscription first: deleting a durable under its subscriber ends that
        # subscription with an error (the server cancels the consumer).
        if self.sub is not None:
            await self.sub.unsubscribe()
        if not self.url.startswith("amqp"):
            await self.broker.delete_stream(f"bench{self.tag}")
        else:
            await self.broker.delete_durable("any", f"d{self.tag}")
        await self.broker.close()


class _RawNats(_Round):
    def __init__(self, url: str, batch: int) -> None:
        super().__init__(batch)
        self.url = url
        self.nc: Any = None
        self.js: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import nats
        import nats.js.api as api

        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=f"raw{self.tag}", subjects=[f"raw.{self.tag}.>"])
        await self.js.add_consumer(
            f"raw{self.tag}",
            api.ConsumerConfig(durable_name=f"r{self.tag}", ack_policy=api.AckPolicy.EXPLICIT),
        )
        psub = await self.js.pull_subscribe_bind(durable=f"r{self.tag}", stream=f"raw{self.tag}")

        async def consume() -> None:
            import nats.errors

            while True:
                try:
                    msgs = await psub.fetch(WINDOW, timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await msg.ack()
                    self.got()

        self.task = asyncio.get_running_loop().create_task(consume())

    async def publish_all(self) -> None:
        publish = self.js.publish
        subject = f"raw.{self.tag}.x"
        await asyncio.gather(*(publish(subject, b"payload") for _ in range(self.batch)))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.js.delete_stream(f"raw{self.tag}")
        await self.nc.close()


class _RawRedis(_Round):
    def __init__(self, url: str, batch: int) -> None:
        super().__init__(batch)
        self.url = url
        self.redis: Any = None
        self.reader: Any = None
        self.task: asyncio.Task[None] | None = None
        self.key = f"raw:{self.tag}"

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(self.url)
        self.reader = aioredis.Redis.from_url(self.url)
        await self.redis.xgroup_create(self.key, "g", id="$", mkstream=True)

        async def consume() -> None:
            while True:
                reply = await self.reader.xreadgroup(
                    "g", "c", {self.key: ">"}, count=WINDOW, block=1000
                )
                for _key, entries in reply or ():
                    ids = [entry for entry, _ in entries]
                    if ids:
                        await self.reader.xack(self.key, "g", *ids)
                        self.got(len(ids))

        self.task = asyncio.get_running_loop().create_task(consume())

    async def publish_all(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for _ in range(self.batch):
            pipe.xadd(self.key, {"t": "raw.x", "d": b"payload"})
        await pipe.execute()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.redis.delete(self.key)
        await self.redis.aclose()
        await self.reader.aclose()


class _RawAmqp(_Round):
    def __init__(self, url: str, batch: int) -> None:
        super().__init__(batch)
        self.url = url
        self.connection: Any = None
        self.exchange: Any = None
        self.queue: Any = None
        self.consumer_tag: Any = None

    async def start(self) -> None:
        import aio_pika

        self.connection = await aio_pika.connect_robust(self.url)
        publisher = await self.connection.channel(publisher_confirms=True)
        self.exchange = await publisher.declare_exchange(
            f"raw{self.tag}", aio_pika.ExchangeType.TOPIC, durable=True
        )
        consumer = await self.connection.channel()
        await consumer.set_qos(prefetch_count=WINDOW)
        self.queue = await consumer.declare_queue(
            f"raw{self.tag}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await self.queue.bind(f"raw{self.tag}", "raw.#")

        async def on_message(message: Any) -> None:
            await message.ack()
            self.got()

        self.consumer_tag = await self.queue.consume(on_message)

    async def publish_all(self) -> None:
        import aio_pika

        publish = self.exchange.publish
        await asyncio.gather(
            *(
                publish(
                    aio_pika.Message(b"payload", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="raw.x",
                )
                for _ in range(self.batch)
            )
        )

    async def stop(self) -> None:
        await self.queue.cancel(self.consumer_tag)  # not deleted under its consumer
        await self.queue.delete(if_unused=False, if_empty=False)
        await self.exchange.delete()
        await self.connection.close()


def _equals(expected: int) -> Callable[[object], bool]:
    return lambda result: result == expected


def cases(
    quick: bool,
    *,
    nats_url: str | None = None,
    redis_url: str | None = None,
    amqp_url: str | None = None,
) -> list[Case]:
    """The durable network cases for the servers given (none without URLs)."""
    batch = 200 if quick else 1000
    out: list[Case] = []
    engines: list[tuple[str, str | None, str, Callable[[str, int], _Round]]] = [
        ("NATS JetStream", nats_url, "nats-py", _RawNats),
        ("Redis Streams", redis_url, "redis-py", _RawRedis),
        ("RabbitMQ", amqp_url, "aio-pika", _RawAmqp),
    ]
    for label, url, raw_name, raw in engines:
        if url is None:
            continue
        pair: list[tuple[_Round, str, bool]] = [
            (raw(url, batch), raw_name, True),
            (_Microstd(url, batch), "microstd", False),
        ]
        for runner, impl, baseline in pair:
            out.append(
                Case(
                    AREA,
                    f"durable publish + consume + ack, {label}",
                    "messages/s, pipelined",
                    impl,
                    runner,
                    baseline=baseline,
                    label=f"{raw_name} (raw client)" if baseline else "microstd",
                    role="peer" if baseline else "core",
                    ops_per_call=batch,
                    check=_equals(batch),
                    setup=runner.setup,
                    teardown=runner.teardown,
                )
            )
    return out
