"""A service for the multi-process tests, configured by environment variables.

Run as `python -m microstd run proc_service:make` from this directory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import microstd


def make() -> microstd.Service:
    svc = microstd.Service(
        os.environ["SVC_NAME"],
        registry=os.environ["MICROSTD_REGISTRY"],
        ttl=float(os.environ.get("SVC_TTL", "2")),
        grace=5.0,
    )

    @svc.handler("Proc.Whoami")
    async def whoami() -> dict[str, object]:
        return {"pid": os.getpid(), "node": svc.server.node_id}

    @svc.handler("Proc.Slow")
    async def slow(req: dict[str, float]) -> dict[str, object]:
        await asyncio.sleep(req["seconds"])
        return {"pid": os.getpid(), "n": req.get("n")}

    @svc.handler("Proc.Ask")
    async def ask(req: dict[str, str]) -> dict[str, object]:
        peer = await svc.client.call(req["peer"], "Proc.Whoami")
        return {"pid": os.getpid(), "peer": peer}

    @svc.handler("Proc.Count")
    async def count(req: dict[str, int]) -> AsyncIterator[dict[str, int]]:
        for n in range(req["n"]):
            yield {"n": n}
        if req.get("fail"):
            raise microstd.errors.conflict("counted too far")

    @svc.handler("Proc.Sum")
    async def total(reqs: AsyncIterator[dict[str, int]]) -> AsyncIterator[int]:
        running = 0
        async for req in reqs:
            running += req["x"]
            yield running

    @svc.handler("Proc.Fail")
    async def fail() -> None:
        raise ValueError("nope")

    return svc
