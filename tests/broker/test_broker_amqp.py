"""`amqp://` beyond the contract suites: names, headers, the server's own arguments."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import pytest

import microstd.broker
from microstd.broker import Message
from microstd.broker.amqp import binding_key
from microstd.errors import ConnectionFailed, NotFound

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _servers import free_port

pytestmark = pytest.mark.services


def test_binding_keys_turn_the_tail_wildcard_into_a_hash() -> None:
    assert binding_key("a.*.c") == "a.*.c"
    assert binding_key("a.>") == "a.#"
    assert binding_key(">") == "#"


def test_bad_exchange_names_are_refused() -> None:
    for bad in ("", "has space", "ex*"):
        with pytest.raises(ValueError, match="exchange"):
            microstd.broker.open(f"amqp://127.0.0.1:{free_port()}/", exchange=bad)


async def test_unreachable_server_raises_connection_failed() -> None:
    broker = microstd.broker.open(f"amqp://127.0.0.1:{free_port()}/?connect_timeout=1")
    with pytest.raises(ConnectionFailed):
        await asyncio.wait_for(broker.connect(), 30)
    await broker.close()


async def test_durable_messages_show_only_their_own_headers(amqp_url: str) -> None:
    base = f"h{uuid.uuid4().hex[:8]}"
    got: list[Message] = []

    def handle(m: Message) -> None:
        got.append(m)
        if m.delivery_count == 1:
            m.nack(delay=0.05)  # through a delay queue and back

    async with microstd.broker.open(amqp_url) as broker:
        await broker.subscribe(f"{base}.>", handle, durable=f"d{base}")
        await broker.publish(f"{base}.x", {"a": 1}, headers={"trace": "t"})
        deadline = time.monotonic() + 20
        while len(got) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await broker.delete_durable("any", f"d{base}")
    first, second = got
    assert first.headers == second.headers == {"trace": "t"}
    assert (first.topic, second.topic) == (f"{base}.x", f"{base}.x")
    assert (first.delivery_count, second.delivery_count) == (1, 2)
    assert first.id == second.id
    assert second.decode() == {"a": 1}


async def test_a_separate_exchange_is_a_separate_broker(amqp_url: str) -> None:
    base = f"e{uuid.uuid4().hex[:8]}"
    got: list[bytes] = []
    async with (
        microstd.broker.open(amqp_url, exchange=f"one-{base}") as one,
        microstd.broker.open(amqp_url + f"?exchange=two-{base}") as two,
    ):
        await one.subscribe(f"{base}.*", lambda m: got.append(m.data))
        await two.publish(f"{base}.x", b"elsewhere")
        await one.publish(f"{base}.x", b"here")
        deadline = time.monotonic() + 20
        while not got:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    assert got == [b"here"]


def test_the_engine_endpoint_redacts_and_takes_its_options() -> None:
    from microstd._engines.amqp import AmqpEndpoint

    endpoint, rest = AmqpEndpoint.from_url(
        "amqp://app:s3cret@127.0.0.1:5672/prod?timeout=2&exchange=ex&heartbeat_hint=1",
        {"connect_timeout": 3},
        area=("exchange",),
    )
    assert "s3cret" not in endpoint.redacted
    assert "s3cret" not in repr(endpoint)
    assert endpoint.timeouts.request == 2.0
    assert endpoint.timeouts.connect == 3.0
    assert rest == {"exchange": "ex"}
    # What is neither the engine's nor the area's stays in the URL, for aio-pika.
    assert endpoint.url.endswith("/prod?heartbeat_hint=1")
    with pytest.raises(ValueError):
        AmqpEndpoint.from_url("amqp://127.0.0.1/?timeout=-1")


async def _queue_exists(url: str, name: str) -> bool:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


async def test_a_durable_deleted_under_its_subscriber_ends_the_subscription(amqp_url: str) -> None:
    # The server cancels the consumer of a deleted queue. That must end the
    # subscription with NotFound through on_error, not be taken for a lost
    # consumer that aio-pika's recovery declares again (bringing the deleted
    # durable back, without its meta queue) and consumes from as before.
    base = f"x{uuid.uuid4().hex[:8]}"
    errors: list[tuple[BaseException, object]] = []
    got: list[bytes] = []
    async with microstd.broker.open(
        amqp_url, on_error=lambda exc, sub: errors.append((exc, sub))
    ) as broker:
        sub = await broker.subscribe(f"{base}.>", lambda m: got.append(m.data), durable=f"d{base}")
        await broker.publish(f"{base}.x", b"before")
        deadline = time.monotonic() + 20
        while not got:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await broker.delete_durable("any", f"d{base}")
        while not errors:
            assert time.monotonic() < deadline, "no error reported for the deleted durable"
            await asyncio.sleep(0.01)
        (exc, where), *_ = errors
        assert isinstance(exc, NotFound)
        assert f"d{base}" in str(exc)
        assert where is sub
        assert not await _queue_exists(amqp_url, f"microstd.durable.d{base}")
        await broker.publish(f"{base}.x", b"after")  # the broker itself is fine
        assert not await _queue_exists(amqp_url, f"microstd.durable.d{base}")
    assert got == [b"before"]
    assert not await _queue_exists(amqp_url, f"microstd.durable.d{base}")


async def test_a_burst_of_publishes_is_not_timed_out_by_its_own_queue(amqp_url: str) -> None:
    # aio-pika writes a channel's publishes one at a time, so in a burst the last
    # ones wait behind all the others in this process. `timeout` bounds the
    # server's confirm: the wait for a turn must not count (it did, and a burst
    # far larger than the client can send in `timeout` failed as a whole, none
    # of it sent).
    # timeout=5 (the default): 256 confirms in flight need far less on any machine,
    # while the 12,000 queued publishes take longer than that to get on the channel.
    async with microstd.broker.open(amqp_url + "?timeout=5") as broker:
        results = await asyncio.gather(
            *(broker.publish("nobody.listens", b"x") for _ in range(12_000)),
            return_exceptions=True,
        )
        failed = [r for r in results if r is not None]
        assert not failed, f"{len(failed)} publishes failed, first: {failed[0]!r}"
        await broker.publish("nobody.listens", b"after")
