"""What a client can make a server hold: timers, threads, memory, connections.

Each test states a bound from `microstd.rpc.Limits` and checks the server keeps it.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

import microstd
from microstd import codec
from microstd.client import Client
from microstd.errors import DeadlineExceeded, ServiceError
from microstd.rpc import Context, Limits, current_context
from microstd.rpc.deadline import _RECENT, _slots

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@pytest.fixture
def reg_url() -> str:
    return f"memory://res{uuid.uuid4().hex[:8]}"


def make_service(reg_url: str, **kw: object) -> microstd.Service:
    svc = microstd.Service("res", registry=reg_url, **kw)  # type: ignore[arg-type]

    @svc.handler("Res.Left")
    async def left() -> object:
        ctx = current_context()
        assert ctx is not None
        return ctx.time_left()

    @svc.handler("Res.Boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return svc


@pytest.fixture
async def svc(reg_url: str) -> AsyncIterator[microstd.Service]:
    async with make_service(reg_url, limits=Limits(max_timeout=30.0)) as s:
        yield s


async def _raw(address: str, head: str, body: bytes = b"") -> bytes:
    """Write one request by hand (aiohttp's client refuses what an attacker sends)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


# --- timers and deadlines ---------------------------------------------------------


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    scheduled = getattr(loop, "_scheduled", [])
    return sum(1 for handle in scheduled if not handle.cancelled())


async def test_long_timeouts_leave_no_timer_behind(svc: microstd.Service, reg_url: str) -> None:
    loop = asyncio.get_running_loop()
    async with Client(reg_url, local=False, timeout=3600.0) as client:
        await client.call("res", "Res.Left")  # connect first: keep-alive timers are not ours
        before = _live_timers(loop)
        for _ in range(200):
            await client.call("res", "Res.Left")
        headers = {"Microstd-Timeout": "3600"}
        for _ in range(50):
            reply = await svc.server.dispatch("Res.Left", b"", None, None, headers)
            assert reply.status == 200
    # Every deadline ended with its call, client's and server's: at most the few most
    # recent slots keep their timer (see deadline._Slots), not one per call.
    assert len(_slots(loop).pending) <= _RECENT
    assert _live_timers(loop) <= before + _RECENT


@pytest.mark.parametrize("value", ["1e308", "1.7e308", "inf", "nan", "3600", "", "soon"])
async def test_timeouts_are_clamped_to_the_server_maximum(
    svc: microstd.Service, value: str
) -> None:
    headers = {"Microstd-Timeout": value} if value else {}
    reply = await svc.server.dispatch("Res.Left", b"", None, None, headers)
    assert reply.status == 200, reply.body
    left = codec.json.loads(reply.body)
    assert isinstance(left, float)
    assert 0 < left <= 30.0


async def test_a_huge_timeout_over_http_is_served(svc: microstd.Service) -> None:
    url = f"http://{svc.server.address}/Res.Left"
    async with aiohttp.ClientSession() as http:
        for value in ("1e308", "-inf", "-1"):
            headers = {**JSON, "Microstd-Timeout": value}
            async with http.post(url, data=b"", headers=headers) as resp:
                body = codec.json.loads(await resp.read())
                if value == "1e308":
                    assert resp.status == 200
                    assert 0 < body <= 30.0  # type: ignore[operator]
                else:
                    assert resp.status == 504
                    assert body["code"] == 504  # type: ignore[index]


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_timeout"):
        Limits(max_timeout=float("inf"))
    with pytest.raises(ValueError, match="handler_threads"):
        Limits(handler_threads=0)
    with pytest.raises(ValueError, match="max_body"):
        Limits(max_body=True)


# --- sync handlers: their own bounded threads --------------------------------------


def blocking_service(
    reg_url: str,
    release: threading.Event,
    started: list[int],
    entered: threading.Event | None = None,
    **kw: object,
) -> microstd.Service:
    """A service whose sync handler blocks until `release` is set (`entered` says it began)."""
    entered = entered or threading.Event()
    svc = microstd.Service("stuck", registry=reg_url, **kw)  # type: ignore[arg-type]

    @svc.handler("Stuck.Wait")
    def wait() -> str:
        started.append(threading.get_ident())
        entered.set()
        release.wait(60)
        return "released"

    return svc


async def test_stuck_sync_handlers_stay_in_their_own_bounded_pool(reg_url: str) -> None:
    release = threading.Event()
    started: list[int] = []
    svc = blocking_service(reg_url, release, started, limits=Limits(handler_threads=2))
    try:
        async with svc, Client(reg_url, retries=0) as client:
            calls = [client.call("stuck", "Stuck.Wait", timeout=0.5) for _ in range(5)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, DeadlineExceeded) for r in results), results
            # Two threads at most; the queued calls' deadlines passed before they started.
            assert len(started) == 2
            assert svc.server.pool.busy == 2
            # The loop's default executor is untouched.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 30) == 42
            release.set()
            assert await client.call("stuck", "Stuck.Wait", timeout=30) == "released"
        assert len(started) == 3  # the queued calls never ran
    finally:
        release.set()


def test_stop_returns_within_grace_though_a_sync_handler_never_returns(reg_url: str) -> None:
    """asyncio.run(...) of a service whose sync handler is stuck ends after stop(),
    with the handler still blocked: nothing waits for its thread."""
    release, entered = threading.Event(), threading.Event()
    started: list[int] = []
    outcome: list[object] = []

    async def main() -> None:
        svc = blocking_service(reg_url, release, started, entered, grace=0.5)
        await svc.start()
        async with Client(reg_url, local=False, retries=0) as client:
            call = asyncio.ensure_future(client.call("stuck", "Stuck.Wait", timeout=60))
            await asyncio.wait_for(asyncio.to_thread(entered.wait), 30)
            await svc.stop()
            try:
                outcome.append(await call)
            except ServiceError as exc:
                outcome.append(exc.code)

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    try:
        runner.join(60)
        assert not runner.is_alive(), "stop() waited for a sync handler that never returns"
        assert not release.is_set()
        assert outcome == [503]
    finally:
        release.set()
        runner.join(60)


async def test_stop_abandons_async_handlers_past_grace(reg_url: str) -> None:
    svc = microstd.Service("slow", registry=reg_url, grace=0.3)
    entered = asyncio.Event()

    @svc.handler("Slow.Forever")
    async def forever() -> None:
        entered.set()
        await asyncio.sleep(3600)

    await svc.start()
    async with Client(reg_url, retries=0) as client:
        call = asyncio.ensure_future(client.call("slow", "Slow.Forever", timeout=60))
        await entered.wait()
        await asyncio.wait_for(svc.stop(), 30)
        with pytest.raises(ServiceError) as info:
            await call
    assert info.value.code == 503
    assert "stopped before" in info.value.detail


# --- decoded memory -----------------------------------------------------------------


async def test_decoded_memory_in_flight_is_bounded(reg_url: str) -> None:
    body = codec.msgpack.dumps([{}] * 200_000)  # decodes to ~72x its size
    per_request = Limits().charge(len(body))
    svc = microstd.Service("big", registry=reg_url)
    svc.server.limits = Limits(max_decoded=2 * per_request, queue_timeout=60.0)
    held = 0
    most = 0

    @svc.handler("Big.Hold")
    async def hold(req: list[object]) -> int:
        nonlocal held, most
        held += 1
        most = max(most, held)
        await asyncio.sleep(0.02)
        held -= 1
        return len(req)

    msgpack, json = "application/msgpack", "application/json"
    async with svc:
        tracemalloc.start()
        try:
            replies = await asyncio.gather(
                *(svc.server.dispatch("Big.Hold", body, msgpack, json, {}) for _ in range(8))
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert [r.status for r in replies] == [200] * 8
    assert most == 2
    # Two decoded bodies (~14 MiB each) at a time, not eight.
    assert peak < 4 * per_request // 72 * 72, peak


async def test_a_request_that_cannot_get_in_is_a_503(reg_url: str) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    svc = microstd.Service("busy", registry=reg_url)
    one = Limits().charge(len(b'"x"'))
    svc.server.limits = Limits(max_decoded=one, queue_timeout=0.2)

    @svc.handler("Busy.Wait")
    async def wait(req: object) -> str:
        entered.set()
        await gate.wait()
        return "done"

    async with svc, Client(reg_url, local=False, retries=0, content_type="application/json") as c:
        first = asyncio.ensure_future(c.call("busy", "Busy.Wait", "x"))
        await entered.wait()
        with pytest.raises(ServiceError) as info:
            await c.call("busy", "Busy.Wait", "x")
        assert info.value.code == 503
        assert "busy" in info.value.detail
        gate.set()
        assert await first == "done"
        assert await c.call("busy", "Busy.Wait", "x") == "done"


# --- slow clients -----------------------------------------------------------------


async def test_a_body_that_does_not_arrive_is_a_408(reg_url: str) -> None:
    async with make_service(reg_url, limits=Limits(body_timeout=0.3)) as svc:
        head = (
            "POST /Res.Left HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        )
        reply = await _raw(svc.server.address, head, b"[1, 2, 3")  # ...and nothing more
        assert _status(reply) == 408
        head_part, _, body = reply.partition(b"\r\n\r\n")
        assert b"Connection: close" in head_part
        assert codec.json.loads(body)["code"] == 408  # type: ignore[index]
        assert svc.server.inflight == 0


@pytest.mark.parametrize("sent", ["", "POST /Res.Left HTTP/1.1\r\nHost: x\r\n"])
async def test_an_idle_connection_is_closed(reg_url: str, sent: str) -> None:
    async with make_service(reg_url, limits=Limits(idle_timeout=0.3)) as svc:
        # Nothing, or headers that never end: the server hangs up (EOF, no reply).
        assert await _raw(svc.server.address, sent) == b""


# --- request ids ------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["caf\u00e9", "a" * 129, "two words", "tab\there", "\u00ff" * 10],
)
@pytest.mark.parametrize("endpoint", ["Res.Left", "Res.Boom", "Res.Missing"])
async def test_unfit_request_ids_are_replaced(
    svc: microstd.Service, given: str, endpoint: str
) -> None:
    head = (
        f"POST /{endpoint} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-Request-Id: {given}\r\nContent-Length: 0\r\n\r\n"
    )
    reply = await _raw(svc.server.address, head)
    head_part, _, body = reply.partition(b"\r\n\r\n")
    lines = dict(line.split(": ", 1) for line in head_part.decode("latin-1").split("\r\n")[1:])
    rid = lines["X-Request-Id"]
    assert len(rid) == 32
    assert int(rid, 16) >= 0
    assert lines["Content-Type"] == "application/json"
    if endpoint != "Res.Left":
        error = codec.json.loads(body)
        assert set(error) == {"id", "code", "detail", "status"}  # type: ignore[arg-type]


async def test_a_fit_request_id_is_kept(svc: microstd.Service) -> None:
    url = f"http://{svc.server.address}/Res.Boom"
    async with aiohttp.ClientSession() as http:
        headers = {**JSON, "X-Request-Id": "req-42:a/b=c"}
        async with http.post(url, data=b"", headers=headers) as resp:
            assert resp.status == 500
            assert resp.headers["X-Request-Id"] == "req-42:a/b=c"
            assert "req-42:a/b=c" in codec.json.loads(await resp.read())["detail"]  # type: ignore[index]


def test_contexts_read_from_headers_are_ordinary_contexts() -> None:
    headers = {"X-Request-Id": "r-1", "Microstd-Caller": "front", "Microstd-Meta-Tenant": "a"}
    ctx = Context.from_headers("svc", "Svc.Do", headers, 30.0)
    assert ctx.deadline is not None
    same = Context("svc", "Svc.Do", "r-1", "front", ctx.deadline, {"tenant": "a"})
    assert ctx == same
    assert repr(ctx) == repr(same)
    with pytest.raises(AttributeError):
        ctx.caller = "x"  # type: ignore[misc]
