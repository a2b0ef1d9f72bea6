"""An event-driven pair: a publisher and queue-group consumers.

    python events.py                # both in one process, on the embedded broker
    python events.py consumer       # with MICROSTD_BROKER=redis://... or nats://...
    python events.py publisher      # in another terminal, same MICROSTD_BROKER

Consumers subscribe to `orders.*` in the queue group "billing": each order
goes to exactly one consumer, however many run.
"""

from __future__ import annotations

import asyncio
import os
import sys

import microstd

BROKER = os.environ.get("MICROSTD_BROKER")
REGISTRY = os.environ.get("MICROSTD_REGISTRY")


def consumer(tag: str, seen: list[str] | None = None) -> microstd.Service:
    svc = microstd.Service("billing", registry=REGISTRY, broker=BROKER)

    @svc.subscriber("orders.*", queue="billing")
    async def on_order(msg: microstd.broker.Message) -> None:
        order = msg.decode()
        print(f"consumer {tag}: {msg.topic} {order}")
        if seen is not None:
            seen.append(tag)

    return svc


async def publish(count: int) -> None:
    async with microstd.broker.open(BROKER or "memory://default") as broker:
        for n in range(count):
            await broker.publish("orders.created", {"order": n, "total": 10 * n})


async def together() -> None:
    seen: list[str] = []
    async with consumer("a", seen), consumer("b", seen):
        await publish(6)
        for _ in range(100):  # delivery may be asynchronous
            if len(seen) == 6:
                break
            await asyncio.sleep(0.02)
    print(f"{len(seen)} orders handled, each by one consumer")


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "both"
    if role in ("consumer", "publisher") and not BROKER:
        # Each process would have its own embedded broker: nothing would arrive.
        sys.exit(
            f"events.py {role}: the consumers and the publisher meet through a shared broker;"
            " set MICROSTD_BROKER (and MICROSTD_REGISTRY) in every process, for example\n"
            "    export MICROSTD_BROKER=redis://127.0.0.1:6379/0"
            " MICROSTD_REGISTRY=redis://127.0.0.1:6379/0\n"
            "or run `python events.py` for both in one process"
        )
    if role == "consumer":
        consumer(str(os.getpid())).run()
    elif role == "publisher":
        asyncio.run(publish(10))
    else:
        asyncio.run(together())
