"""Streams over NATS: what only this transport has to get right (the stream
contract itself runs on NATS in tests/contract/test_rpc_streams.py).

An end whose process dies mid-stream must not leave the other waiting:
the client gets `ConnectionFailed` (not a hang to its deadline), the
server's handler is cancelled. The wire is the one docs/rpc.md documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

import microstd
from microstd import codec
from microstd.client import Client
from microstd.errors import ConnectionFailed, DeadlineExceeded, ServiceError
from microstd.rpc.nats_channel import WINDOW, WINDOW_BYTES

pytestmark = pytest.mark.services

msgpack = codec.get("application/msgpack")

#: A service in a process of its own: an endless stream; prints "ready" once serving.
SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import microstd

    async def main(name: str, url: str) -> None:
        svc = microstd.Service(name, registry="memory://", transport=url)

        @svc.handler("Far.Endless")
        async def endless(req: dict):
            n = 0
            while True:
                n += 1
                yield n
                await asyncio.sleep(0.01)

        async with svc:
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)

#: A client in a process of its own: reads a stream, prints "reading" after the first item.
CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    import microstd

    async def main(name: str, url: str) -> None:
        async with microstd.Client(transport=url) as client:
            async for n in client.stream(name, "Near.Endless", {}):
                if n == 1:
                    print("reading", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _drain(stream: AsyncIterator[object]) -> None:
    """Read a stream to its end (the test's own bound is generous: 60 s)."""
    async with asyncio.timeout(60):
        async for _ in stream:
            pass


@contextlib.asynccontextmanager
async def process(script: str, *args: str, ready: str) -> AsyncIterator[subprocess.Popen[str]]:
    """A Python process running `script`, once it printed `ready`; killed on exit."""
    proc = _spawn(script, *args)
    try:
        assert proc.stdout is not None
        # (The process prints it, or dies: EOF.) Read on a thread: this loop may
        # serve what the process calls.
        line = await asyncio.to_thread(proc.stdout.readline)
        if line.strip() != ready:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise RuntimeError(f"the process did not start: {line!r}\n{err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("timeout", [None, 120.0])
async def test_a_server_process_dying_mid_stream_fails_the_client(
    nats_url: str, timeout: float | None
) -> None:
    name = unique("far")
    async with (
        process(SERVER, name, nats_url, ready="ready") as proc,
        Client(transport=nats_url, retries=0) as client,
    ):
        stream = client.stream(name, "Far.Endless", {}, timeout=timeout)
        assert await stream.__anext__() == 1
        proc.kill()
        # Not a hang until the deadline (none, or 2 minutes away): an error as soon
        # as NATS says the server's inbox is gone.
        with pytest.raises(ConnectionFailed, match="ended without its end") as info:
            await _drain(stream)
        assert "the server is gone" in str(info.value)
        assert not isinstance(info.value, DeadlineExceeded)


async def test_a_frozen_server_process_fails_the_client_after_its_silence(nats_url: str) -> None:
    name = unique("frozen")
    async with (
        process(SERVER, name, nats_url, ready="ready") as proc,
        Client(transport=nats_url, retries=0) as client,
    ):
        stream = client.stream(name, "Far.Endless", {})
        assert await stream.__anext__() == 1
        # Stopped, not dead: its NATS connection stays open, so only the
        # heartbeats' silence tells.
        proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(ConnectionFailed, match="no word from the server"):
                await _drain(stream)
        finally:
            proc.send_signal(signal.SIGCONT)


async def test_a_client_process_dying_mid_stream_stops_the_handler(nats_url: str) -> None:
    name = unique("near")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)
    started, cleaned = asyncio.Event(), asyncio.Event()

    @svc.handler("Near.Endless")
    async def endless(req: dict[str, int]) -> AsyncIterator[int]:
        started.set()
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            cleaned.set()

    async with svc:
        async with process(CLIENT, name, nats_url, ready="reading") as proc:
            await asyncio.wait_for(started.wait(), 30)
            proc.kill()
            await asyncio.wait_for(cleaned.wait(), 30)
        assert await _until(lambda: svc.server.streams == 0)


async def test_client_cancel_stops_the_generator(nats_url: str) -> None:
    name = unique("cancel")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)
    cleaned = asyncio.Event()
    produced = 0

    @svc.handler("Cancel.Endless")
    async def endless(req: dict[str, int]) -> AsyncIterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            cleaned.set()

    async with svc, Client(transport=nats_url) as client:
        stream = client.stream(name, "Cancel.Endless", {})
        assert await stream.__anext__() == 1
        await stream.aclose()
        await asyncio.wait_for(cleaned.wait(), 30)  # its finally ran: the generator stopped
        assert await _until(lambda: svc.server.streams == 0)
        # Credit bounds how far it ran ahead of the one item read.
        assert produced <= WINDOW + 2, produced


async def _until(check: object, seconds: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_documented_wire(nats_url: str) -> None:
    """A bare nats-py client opens a server stream as docs/rpc.md says, and reads it."""
    name = unique("wire")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)

    @svc.handler("Wire.Count")
    async def count(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["upto"]):
            yield n

    async with svc:
        nc = await nats.connect(nats_url)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            request = b"\x01" + msgpack.dumps({"upto": 40})  # DATA, END implied
            await nc.publish(
                f"microstd.stream.{name}.Wire.Count",
                request,
                reply=inbox,
                headers={"Microstd-Credit": "64 1048576", "Content-Type": "application/msgpack"},
            )
            credit = await sub.next_msg(timeout=10)
            assert (credit.data[0], len(credit.data)) == (0x10, 17)  # CREDIT upto, bytes
            assert credit.reply.startswith("_INBOX.")  # where the server's end is
            frames: list[tuple[int, bytes]] = []  # (sequence number, frame)
            batches = 0
            while not frames or frames[-1][1][0] == 0x01:
                data = (await sub.next_msg(timeout=10)).data
                seq = int.from_bytes(data[-8:], "big")
                if data[0] < 0x10:  # one frame
                    frames.append((seq, data[:-8]))
                elif data[0] == 0x13:  # BATCH: (4-byte length, frame)..., the first's seq
                    batches += 1
                    pos = 1
                    while pos < len(data) - 8:
                        size = int.from_bytes(data[pos : pos + 4], "big")
                        frames.append((seq, data[pos + 4 : pos + 4 + size]))
                        pos += 4 + size
                        seq += 1
            assert [seq for seq, _ in frames] == list(range(1, 42))
            assert [msgpack.loads(f[1:]) for _, f in frames[:40]] == list(range(40))
            assert frames[40][1] == b"\x02"  # END
            assert batches  # a handler that is ahead sends several frames to a message
            await nc.publish(credit.reply, b"\x12")  # CLOSE
        finally:
            await nc.close()


async def test_a_gap_in_the_sequence_breaks_the_stream(nats_url: str) -> None:
    """Frames lost on the way (a NATS reconnection) are never skipped silently:
    the stream breaks, the handler is cancelled and the sender is told (CLOSE)."""
    name = unique("gap")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)
    taken: list[int] = []
    cancelled = asyncio.Event()

    @svc.handler("Gap.Sum")
    async def total(reqs: AsyncIterator[int]) -> int:
        try:
            async for x in reqs:
                taken.append(x)
            return sum(taken)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with svc:
        nc = await nats.connect(nats_url)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"microstd.stream.{name}.Gap.Sum", b"", reply=inbox)
            credit = await sub.next_msg(timeout=10)
            server = credit.reply

            def frame(x: int, seq: int) -> bytes:
                return b"\x01" + msgpack.dumps(x) + seq.to_bytes(8, "big")

            await nc.publish(server, frame(1, 1))
            await nc.publish(server, frame(3, 3))  # seq 2 never came
            await asyncio.wait_for(cancelled.wait(), 30)
            assert taken == [1]
            while (await sub.next_msg(timeout=10)).data[:1] != b"\x12":
                pass  # (a CREDIT may come first) then CLOSE
        finally:
            await nc.close()


def _batch(items: list[bytes], seq: int) -> bytes:
    """A BATCH message (docs/rpc.md): (4-byte length, frame)..., the first's sequence number."""
    body = b"".join(len(f).to_bytes(4, "big") + f for f in items)
    return b"\x13" + body + seq.to_bytes(8, "big")


async def test_batches_from_a_bare_client(nats_url: str) -> None:
    """Frames sent several to a message (BATCH) are taken in order, numbered one
    by one with single frames; a batch out of sequence breaks the stream."""
    name = unique("batch")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)
    cancelled = asyncio.Event()

    @svc.handler("Batch.Sum")
    async def total(reqs: AsyncIterator[int]) -> list[int]:
        try:
            return [x async for x in reqs]
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def data(x: int) -> bytes:
        return b"\x01" + msgpack.dumps(x)

    async with svc:
        nc = await nats.connect(nats_url)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"microstd.stream.{name}.Batch.Sum", b"", reply=inbox)
            server = (await sub.next_msg(timeout=10)).reply
            await nc.publish(server, _batch([data(1), data(2), data(3)], 1))
            await nc.publish(server, data(4) + (4).to_bytes(8, "big"))
            await nc.publish(server, _batch([data(5), b"\x02"], 5))  # ..., END
            while (msg := await sub.next_msg(timeout=10)).data[:1] not in (b"\x01", b"\x13"):
                pass  # CREDIT, PING
            size = int.from_bytes(msg.data[1:5], "big")  # (a BATCH's first frame)
            reply = msg.data[:-8] if msg.data[0] == 0x01 else msg.data[5 : 5 + size]
            assert msgpack.loads(reply[1:]) == [1, 2, 3, 4, 5]

            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"microstd.stream.{name}.Batch.Sum", b"", reply=inbox)
            server = (await sub.next_msg(timeout=10)).reply
            await nc.publish(server, _batch([data(1), data(2)], 1))
            await nc.publish(server, _batch([data(4), data(5)], 4))  # seq 3 never came
            await asyncio.wait_for(cancelled.wait(), 30)
            while (await sub.next_msg(timeout=10)).data[:1] != b"\x12":
                pass  # then CLOSE
        finally:
            await nc.close()


async def test_bursts_and_pauses_keep_their_order(nats_url: str) -> None:
    """Frames published one by one (a paced sender) and in batches (a sender that
    is ahead) interleave in order, both ways, through many credit windows."""
    name = unique("burst")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)

    async def paced(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
            if i % 700 < 5:
                await asyncio.sleep(0.001)  # a few alone, then a burst
            elif i % 50 == 0:
                await asyncio.sleep(0)

    @svc.handler("Burst.Out")
    async def out(req: dict[str, int]) -> AsyncIterator[int]:
        async for i in paced(req["n"]):
            yield i

    @svc.handler("Burst.In")
    async def into(reqs: AsyncIterator[int]) -> list[int]:
        return [x async for x in reqs]

    n = 3 * WINDOW + 100
    async with svc, Client(transport=nats_url) as client:
        assert [x async for x in client.stream(name, "Burst.Out", {"n": n})] == list(range(n))
        assert await client.call(name, "Burst.In", paced(n)) == list(range(n))


async def test_an_item_over_max_payload(nats_url: str) -> None:
    """An item NATS cannot carry fails the stream with the server's ERROR (a reply)
    or at the client (a request), naming max_payload; what came before arrives."""
    name = unique("big")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)

    @svc.handler("Big.Replies")
    async def replies(req: dict[str, int]) -> AsyncIterator[bytes]:
        yield b"small"
        yield b"x" * (2 << 20)

    @svc.handler("Big.Requests")
    async def requests(reqs: AsyncIterator[bytes]) -> int:
        return sum([len(r) async for r in reqs])

    async def big() -> AsyncIterator[bytes]:
        yield b"x" * (2 << 20)

    async with svc, Client(transport=nats_url) as client:
        stream = client.stream(name, "Big.Replies", {})
        assert await stream.__anext__() == b"small"
        with pytest.raises(ServiceError) as info:
            await stream.__anext__()
        assert info.value.code == 500
        with pytest.raises(ServiceError, match="max_payload") as info:
            await client.call(name, "Big.Requests", big())
        assert info.value.code == 413
        assert await _until(lambda: svc.server.streams == 0)


def test_sync_client_streams_over_nats(nats_url: str) -> None:
    from microstd._loopthread import LoopThread

    name = unique("sync")
    svc = microstd.Service(name, registry="memory://", transport=nats_url)

    @svc.handler("Sync.Count")
    async def count(req: dict[str, int]) -> AsyncIterator[int]:
        for n in range(req["n"]):
            yield n

    @svc.handler("Sync.Running")
    async def running(reqs: AsyncIterator[int]) -> AsyncIterator[int]:
        total = 0
        async for x in reqs:
            total += x
            yield total

    loop = LoopThread("nats-sync-streams")
    loop.run(svc.start())
    try:
        with microstd.SyncClient(transport=nats_url) as client:
            assert list(client.stream(name, "Sync.Count", {"n": 4})) == [0, 1, 2, 3]
            assert list(client.stream(name, "Sync.Running", iter([1, 2, 3]))) == [1, 3, 6]
    finally:
        loop.run(svc.stop())
        loop.stop()


@pytest.mark.parametrize(
    "bad",
    [
        b"\x01",  # shorter than a sequence number (it read as seq 1, an empty frame)
        b"\x01\x00\x00\x00\x00\x00\x00\x01",  # 8 bytes: no type byte left
        _batch([b"\x01\x90"], 1)[:-9] + (1).to_bytes(8, "big"),  # a length past the frame
        b"\x13" + (1 << 31).to_bytes(4, "big") + (1).to_bytes(8, "big"),  # a huge length
        _batch([b""], 1),  # an empty frame in a batch
        _batch([b"\x10\x00"], 1),  # a CREDIT inside a batch
    ],
)
async def test_a_malformed_frame_from_the_server_fails_the_client_cleanly(
    nats_url: str, bad: bytes
) -> None:
    """A bare nats-py 'instance' answers a stream's opening with a malformed
    message: the client's stream raises `ConnectionFailed` (no IndexError, no hang)."""
    name = unique("hostile")
    nc = await nats.connect(nats_url)
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            mine = nc.new_inbox()
            await nc.subscribe(mine)
            await nc.publish(
                msg.reply, (0x10).to_bytes(1, "big") + (64).to_bytes(8, "big") * 2, reply=mine
            )
            await nc.publish(msg.reply, bad)

        await nc.subscribe(f"microstd.stream.{name}.>", queue=name, cb=answer)
        await nc.flush()
        async with Client(transport=nats_url) as client:
            with pytest.raises(ConnectionFailed, match="malformed"):
                await asyncio.wait_for(_drain(client.stream(name, "Bad.Items", {})), 30)
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("header", "window"),
    [
        ("64 1048576", (64, 1048576)),
        ("² 1", None),  # a digit int() refuses
        ("9" * 5000 + " 1", None),  # over int()'s digit limit
        ("-1 5", None),
        ("0 5", None),
        ("5", None),
    ],
)
def test_an_openings_credit_header_never_raises(
    header: str, window: tuple[int, int] | None
) -> None:
    from microstd.rpc.nats_streams import _credit

    assert _credit({"Microstd-Credit": header}) == (window or (WINDOW, WINDOW_BYTES))
