"""A service with one slow subscriber, for the drain-on-SIGTERM tests.

Run as `python -m microstd run proc_subscriber:make` from this directory, with
SVC_BROKER (URL), SVC_TOPIC and SVC_OUT (a file the handler appends each
handled message's body to) set; SVC_DURABLE makes the subscription durable
(SVC_ACK_WAIT its ack_wait), SVC_DELAY is each handler's time, SVC_GRACE the
service's. SVC_OUT + ".started" holds the id of the message last started.
A message on SVC_TOPIC + "-ready" creates SVC_OUT + ".ready", so a test can
wait until the subscriptions are live.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import microstd


def make() -> microstd.Service:
    out = Path(os.environ["SVC_OUT"])
    delay = float(os.environ.get("SVC_DELAY", "0.005"))
    options: dict[str, Any] = {}
    if os.environ.get("SVC_DURABLE"):
        options["durable"] = os.environ["SVC_DURABLE"]
        options["max_inflight"] = 50
    if os.environ.get("SVC_ACK_WAIT"):
        options["ack_wait"] = float(os.environ["SVC_ACK_WAIT"])
    svc = microstd.Service(
        "subscriber",
        registry="memory://",
        broker=os.environ["SVC_BROKER"],
        grace=float(os.environ.get("SVC_GRACE", "30")),
    )

    @svc.subscriber(os.environ["SVC_TOPIC"], queue=os.environ.get("SVC_QUEUE"), **options)
    async def handle(msg: microstd.broker.Message) -> None:
        # The id of the message in hand, for tests that kill the process now.
        Path(f"{out}.started").write_text(f"{msg.id}\n")  # noqa: ASYNC240
        await asyncio.sleep(delay)
        # One short append per message; a thread hop would cost more than it saves.
        with out.open("a", encoding="utf-8") as f:  # noqa: ASYNC230
            f.write(f"{msg.decode()}\n")

    @svc.subscriber(os.environ["SVC_TOPIC"] + "-ready")
    def ready(msg: microstd.broker.Message) -> None:
        Path(f"{out}.ready").touch()

    return svc
