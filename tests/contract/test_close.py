"""`close()` means closed: what this project adds beyond the contract's suites.

Every area's suite checks, on every backend, that a closed handle raises
`Closed` and ends what it started. Here: memory locks failing the waiters
queued through a closed handle, and `Client` / `Service`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import microstd
import microstd.sync
from microstd.errors import Closed


async def _refused(*calls: Any) -> None:
    for call in calls:
        with pytest.raises(Closed, match="is closed"):
            await call()


@pytest.mark.parametrize("url", ["memory://?impl=rust", "memory://?impl=python"])
async def test_close_fails_the_waiters_queued_through_the_handle(url: str) -> None:
    async with microstd.sync.open(url.replace("://", "://lifecycle-waiters")) as other:
        locks = microstd.sync.open(url.replace("://", "://lifecycle-waiters"))
        holder = await other.acquire("busy", ttl=30.0)
        waiter = asyncio.ensure_future(locks.acquire("busy", ttl=1.0))
        deadline = asyncio.get_running_loop().time() + 10.0
        while not waiter.done() and other._cores.locks.waiting("busy") != 1:  # type: ignore[attr-defined]
            assert asyncio.get_running_loop().time() < deadline, "the waiter never queued"
            await asyncio.sleep(0.01)
        await locks.close()
        with pytest.raises(Closed):
            await asyncio.wait_for(waiter, 10.0)
        # The queue is left clean: the holder's release hands the lock to nobody stale.
        await holder.release()
        lease = await other.acquire("busy", ttl=1.0, wait=5.0)
        await lease.release()


async def test_client_and_service() -> None:
    svc = microstd.Service("lifecycle", registry="memory://lifecycle-rpc")

    @svc.handler("Life.Ping")
    async def ping(req: dict[str, Any]) -> dict[str, Any]:
        return req

    async with svc, microstd.Client(registry="memory://lifecycle-rpc") as client:
        assert await client.call("lifecycle", "Life.Ping", {"a": 1}) == {"a": 1}
    assert client.closed
    assert svc.closed
    await client.close()
    await svc.stop()
    await _refused(
        client.connect,
        lambda: client.call("lifecycle", "Life.Ping", {}),
        svc.start,
        svc.connect,
    )
