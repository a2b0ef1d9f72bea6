"""`_close_bounded`: closing a nats-py client whose server stopped reading gives
up after its bound and leaves nothing behind (socket, subscription tasks).

The server is a stand-in on loopback that answers the handshake and then never
reads again (as a frozen server), so nats-py's close waits at its final drain."""

from __future__ import annotations

import asyncio
import gc
import time

from nats.aio.client import Client

from microstd._engines.nats import _close_bounded

INFO = (
    b'INFO {"server_id":"x","version":"2.10.0","go":"go","host":"127.0.0.1","port":1,'
    b'"max_payload":1048576,"proto":1,"headers":true}\r\n'
)


async def _stops_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(INFO)
        await writer.drain()
        seen = b""
        while b"PING" not in seen:
            seen += await reader.read(4096)
        writer.write(b"PONG\r\n")
        await writer.drain()
        await asyncio.sleep(3600)
    finally:
        writer.transport.abort()


async def test_a_close_stuck_in_its_drain_ends_in_time_and_leaves_no_task() -> None:
    server = await asyncio.start_server(_stops_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    nc = Client()
    try:
        await nc.connect(
            f"nats://127.0.0.1:{port}",
            allow_reconnect=False,
            ping_interval=3600,
            pending_size=512 * 1024 * 1024,
        )

        async def handler(msg: object) -> None:
            pass

        await nc.subscribe("a", cb=handler)
        for _ in range(100):  # far more than the socket's buffers hold
            await nc.publish("a", b"x" * 1_000_000)
        await asyncio.sleep(0.5)
        await nc.publish("a", b"y")  # left pending: the close's own flush waits on it
        start = time.monotonic()
        await _close_bounded(nc, 1.0)
        assert time.monotonic() - start < 5.0
        await asyncio.sleep(0.2)
        waiting = [t for t in asyncio.all_tasks() if "_wait_for_msgs" in repr(t)]
        assert waiting == [], waiting
        assert not nc._subs
    finally:
        server.close()
        handlers = [t for t in asyncio.all_tasks() if "_stops_reading" in repr(t)]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        # What the abandoned client left is collected here, not during a later
        # test (a finalizer run by a collection inside `ast.parse` trips
        # CPython 3.11's "AST constructor recursion depth mismatch").
        del nc
        gc.collect()
