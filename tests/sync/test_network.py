"""Network backends report an unreachable server as `ConnectionFailed`."""

from __future__ import annotations

import pytest

from _servers import free_port
from microstd import sync
from microstd.errors import ConnectionFailed


@pytest.mark.parametrize("scheme", ["redis", "etcd", "postgresql"])
async def test_unreachable_server_raises_connection_failed(scheme: str) -> None:
    locks = sync.open(f"{scheme}://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ConnectionFailed):
            await locks.connect()
        with pytest.raises(ConnectionFailed):
            await locks.acquire("x", ttl=1.0, wait=0)
    finally:
        await locks.close()


def test_sync_surface_translates_too() -> None:
    locks = sync.open_sync(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ConnectionFailed):
            locks.acquire("x", ttl=1.0, wait=0)
    finally:
        locks.close()
