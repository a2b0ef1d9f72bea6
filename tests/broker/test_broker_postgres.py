"""postgresql:// broker specifics: bodies past the NOTIFY limit, in order with small ones."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import microstd.broker
from microstd.broker import Message
from microstd.errors import NotSupported

pytestmark = pytest.mark.services


async def test_large_bodies_are_stored_and_delivered_in_order(postgres_url: str) -> None:
    got: list[tuple[str, int]] = []
    done = asyncio.Event()

    def handler(msg: Message) -> None:
        value = msg.decode()
        got.append((msg.topic, len(value)))  # type: ignore[arg-type]
        if len(got) == 3:
            done.set()

    async with microstd.broker.open(postgres_url, table=f"b{uuid.uuid4().hex[:10]}") as broker:
        await broker.subscribe("big.*", handler)
        await broker.publish("big.a", b"x" * 10)
        await broker.publish("big.b", b"y" * 200_000)  # far past NOTIFY's 8000 bytes
        await broker.publish("big.c", b"z" * 10)
        await asyncio.wait_for(done.wait(), 10)
    assert got == [("big.a", 10), ("big.b", 200_000), ("big.c", 10)]


async def test_durable_subscriptions_are_not_supported_yet(postgres_url: str) -> None:
    async with microstd.broker.open(postgres_url) as broker:
        with pytest.raises(NotSupported):
            await broker.subscribe("a.b", lambda m: None, durable="d")
