"""Closing a NATS broker hands every message nats-py already received to the
handlers: nats-py's unsubscribe() would discard its own pending queue (the
race behind the flaky test_close_drains_in_flight_handlers[nats])."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import microstd.broker
from microstd.broker import Message

pytestmark = pytest.mark.services


async def test_close_delivers_what_the_client_already_received(nats_url: str) -> None:
    base = f"sec{uuid.uuid4().hex[:8]}"
    done: list[int] = []
    started = asyncio.Event()

    async def slow(m: Message) -> None:
        started.set()
        await asyncio.sleep(0.02)
        done.append(m.decode())  # type: ignore[arg-type]

    # max_pending=1 with overflow="block": the delivery queue fills at once, so
    # the rest wait in nats-py's own queue, where the old close() dropped them.
    sub_broker = microstd.broker.open(nats_url, max_pending=1, overflow="block")
    async with microstd.broker.open(nats_url) as pub:
        await sub_broker.connect()
        await sub_broker.subscribe(f"{base}.d", slow)
        for i in range(6):
            await pub.publish(f"{base}.d", i)
        await pub.flush()  # type: ignore[attr-defined]
        await asyncio.wait_for(started.wait(), 10)
        await sub_broker.close()
    assert done == list(range(6))
