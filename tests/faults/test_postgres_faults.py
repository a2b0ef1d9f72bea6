"""postgresql:// locks and broker under a server kill (the store's faults are in
test_store_faults.py). Each docstring is a guarantee docs/guarantees.md quotes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import microstd.broker
import microstd.sync
from _servers import ServerProcess
from faults._support import FAST, eventually, fails_fast, never_hangs
from microstd.errors import ConnectionFailed, ConnectionRestored, LockTimeout

pytestmark = pytest.mark.services


def _url(server: ServerProcess) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/postgres"


async def test_leases_and_tokens_survive_a_kill(servers: Callable[[str], ServerProcess]) -> None:
    """Server killed and restarted: a lease granted before the kill is still held
    (its row is committed), nobody else gets the lock meanwhile, its holder can
    refresh and release it, and tokens keep increasing."""
    server = servers("postgres")
    async with microstd.sync.open(_url(server), **FAST) as locks:
        lease = await locks.acquire("job", ttl=60.0)
        server.kill()
        await fails_fast(locks.acquire("job", ttl=1.0, wait=0))
        server.start()
        await eventually(lambda: locks.leader("other"))  # the server answers again
        # (not inside `eventually`: LockTimeout is a TimeoutError, which it reads as a hang)
        with pytest.raises(LockTimeout):
            await locks.acquire("job", ttl=1.0, wait=0)
        await eventually(lambda: lease.refresh())
        await lease.release()
        again = await locks.acquire("job", ttl=5.0)
        assert again.token > lease.token
        await again.release()


async def test_broker_reports_the_loss_and_delivers_again(
    servers: Callable[[str], ServerProcess],
) -> None:
    """Server killed and restarted: the broker reports ConnectionFailed then
    ConnectionRestored to on_error, and messages published after it is back are
    delivered to the same subscription (those published while it was down are not)."""
    server = servers("postgres")
    events: list[BaseException] = []
    got: asyncio.Queue[object] = asyncio.Queue()
    async with microstd.broker.open(_url(server), **FAST) as broker:
        broker.on_error(lambda exc, sub: events.append(exc))
        await broker.subscribe("t.*", lambda m: got.put_nowait(m.decode()))
        await broker.publish("t.a", 1)
        assert await never_hangs(got.get()) == 1
        server.kill()
        server.start()
        deadline = asyncio.get_running_loop().time() + 30
        while not any(isinstance(e, ConnectionRestored) for e in events):
            assert asyncio.get_running_loop().time() < deadline, events
            await asyncio.sleep(0.05)
        assert any(isinstance(e, ConnectionFailed) for e in events)
        await eventually(lambda: broker.publish("t.b", 2))
        assert await never_hangs(got.get()) == 2
