"""Redis broker: envelopes of the wrong shape (anyone may publish on the channel)
are skipped and logged without their payload; the subscription survives."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

import microstd.broker
from microstd import codec
from microstd.broker import Message
from microstd.broker._network import MalformedEnvelope, parse_envelope

pytestmark = pytest.mark.services

GOOD = [1, "id-1", {"h": "v"}, "application/msgpack", b"\x01"]
BAD_SHAPES = [
    "not a list",
    [1, "id"],
    [2, "id", {}, "ct", b""],
    [True, "id", {}, "ct", b""],
    [1, 42, {}, "ct", b""],
    [1, "x" * 1000, {}, "ct", b""],
    [1, "id", ["not", "a", "map"], "ct", b""],
    [1, "id", {"h": 1}, "ct", b""],
    [1, "id", {1: "v"}, "ct", b""],
    [1, "id", {}, None, b""],
    [1, "id", {}, ["ct"], b""],
    [1, "id", {}, "ct", "str body"],
    {"a": "map"},
]


def test_parse_envelope_accepts_ours() -> None:
    assert parse_envelope(codec.msgpack.dumps(GOOD)) == ("id-1", {"h": "v"}, GOOD[3], b"\x01")


@pytest.mark.parametrize("shape", BAD_SHAPES, ids=range(len(BAD_SHAPES)))
def test_parse_envelope_refuses_other_shapes(shape: object) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_envelope(codec.msgpack.dumps(shape))


@pytest.mark.parametrize("raw", [b"\xc1", None, "text"])
def test_parse_envelope_refuses_non_msgpack(raw: object) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_envelope(raw)


async def test_subscription_survives_malformed_envelopes(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    base = f"sec{uuid.uuid4().hex[:8]}"
    got: list[Message] = []
    raw = aioredis.Redis.from_url(redis_url)
    async with microstd.broker.open(redis_url) as broker:
        await broker.subscribe(f"{base}.*", got.append)
        with caplog.at_level(logging.WARNING, "microstd"):
            for shape in BAD_SHAPES:
                await raw.publish(f"{base}.x", codec.msgpack.dumps(shape))
            await raw.publish(f"{base}.x", b"\xc1 secret-payload")
            await broker.publish(f"{base}.y", {"fine": True})
            for _ in range(1000):
                if got:
                    break
                await asyncio.sleep(0.01)
        assert [(m.topic, m.decode()) for m in got] == [(f"{base}.y", {"fine": True})]
        skipped = [
            r.getMessage() for r in caplog.records if "skipped a malformed" in r.getMessage()
        ]
        assert len(skipped) == len(BAD_SHAPES) + 1
        assert not any("secret-payload" in text for text in skipped)
    await raw.aclose()
