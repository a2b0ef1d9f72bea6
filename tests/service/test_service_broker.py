"""Service subscribers through the broker area (`@svc.subscriber`) and `microstd publish`.

These need `microstd.broker`, which lands from its own branch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import microstd


@pytest.fixture
def broker_url() -> str:
    return f"memory://brk{uuid.uuid4().hex[:8]}"


async def wait_for(condition: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_subscriber_receives_published_messages(broker_url: str) -> None:
    svc = microstd.Service("orders", registry="memory://", broker=broker_url)
    got: list[object] = []
    got_sync: list[str] = []

    @svc.subscriber("orders.*")
    async def on_order(msg: microstd.broker.Message) -> None:
        got.append(msg.decode())

    @svc.subscriber("orders.created")
    def on_created(msg: microstd.broker.Message) -> None:  # sync handlers run on a thread
        got_sync.append(msg.topic)

    async with svc, microstd.broker.open(broker_url) as broker:
        await broker.publish("orders.created", {"id": 1})
        await broker.publish("orders.paid", {"id": 1})
        await broker.publish("invoices.created", {"id": 2})
        await wait_for(lambda: len(got) == 2 and len(got_sync) == 1)
        assert sorted(g["id"] for g in got) == [1, 1]  # type: ignore[index]
        assert got_sync == ["orders.created"]


async def test_queue_group_splits_messages_between_instances(broker_url: str) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def instance(tag: str) -> microstd.Service:
        svc = microstd.Service("workers", registry="memory://", broker=broker_url)

        @svc.subscriber("jobs.>", queue="workers")
        async def on_job(msg: microstd.broker.Message) -> None:
            seen[tag].append(msg.decode())  # type: ignore[arg-type]

        return svc

    async with instance("a"), instance("b"), microstd.broker.open(broker_url) as broker:
        for n in range(20):
            await broker.publish("jobs.resize", n)
        await wait_for(lambda: len(seen["a"]) + len(seen["b"]) == 20)
        await asyncio.sleep(0.1)  # nothing is delivered twice
    assert sorted(seen["a"] + seen["b"]) == list(range(20))


async def test_stop_drains_message_handlers(broker_url: str) -> None:
    svc = microstd.Service("drain", registry="memory://", broker=broker_url, grace=5.0)
    started = asyncio.Event()
    done: list[int] = []

    @svc.subscriber("work.slow")
    async def slow(msg: microstd.broker.Message) -> None:
        started.set()
        await asyncio.sleep(0.3)
        done.append(1)

    await svc.start()
    async with microstd.broker.open(broker_url) as broker:
        publish = asyncio.ensure_future(broker.publish("work.slow", b"x"))
        await asyncio.wait_for(started.wait(), 5)
        await svc.stop()
        assert done == [1]
        await publish


async def test_stop_handles_every_queued_message(broker_url: str) -> None:
    svc = microstd.Service("drainq", registry="memory://", broker=broker_url, grace=30.0)
    started = asyncio.Event()
    done: list[int] = []

    @svc.subscriber("work.queued")
    async def slow(msg: microstd.broker.Message) -> None:
        started.set()
        await asyncio.sleep(0.005)
        done.append(msg.decode())  # type: ignore[arg-type]

    await svc.start()
    async with microstd.broker.open(broker_url) as broker:
        for n in range(50):
            await broker.publish("work.queued", n)
        await asyncio.wait_for(started.wait(), 5)
        await svc.stop()
    assert done == list(range(50))


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_sigterm_handles_all_300_received_messages(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    from _procs import HERE

    url = request.getfixturevalue(f"{kind}_url")
    topic = f"drain.{uuid.uuid4().hex[:8]}"
    out = tmp_path / "handled.txt"
    env = {**os.environ, "SVC_BROKER": url, "SVC_TOPIC": topic, "SVC_OUT": str(out)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "proc_subscriber:make"],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with microstd.broker.open_sync(url) as pub:
            deadline = time.monotonic() + 30
            while not Path(f"{out}.ready").exists():
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the service never subscribed"
                pub.publish(f"{topic}-ready", b"")
                time.sleep(0.05)
            for n in range(300):
                pub.publish(topic, n)
        deadline = time.monotonic() + 30
        while not out.exists() or len(out.read_text().split()) < 20:
            assert time.monotonic() < deadline, "the service handled nothing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    handled = [int(x) for x in out.read_text().split()]
    assert sorted(handled) == list(range(300))


async def test_service_areas_open_from_urls(broker_url: str) -> None:
    svc = microstd.Service("areas", registry="memory://", broker=broker_url)
    async with svc:
        assert svc.broker is svc.broker
        sub_topic = f"t{uuid.uuid4().hex[:6]}"
        got: list[object] = []
        await svc.broker.subscribe(sub_topic, lambda m: got.append(m.decode()))
        async with microstd.broker.open(broker_url) as other:
            await other.publish(sub_topic, "hi")
        await wait_for(lambda: got == ["hi"])


async def test_publish_command(nats_url: str) -> None:
    got: list[object] = []
    topic = f"cli.{uuid.uuid4().hex[:6]}"
    async with microstd.broker.open(nats_url) as broker:
        await broker.subscribe(topic, lambda m: got.append(m.decode()))
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "microstd", "publish", topic, '{"n": 1}', "--broker", nats_url],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        await wait_for(lambda: got == [{"n": 1}])


def test_events_example_on_embedded_broker() -> None:
    from _procs import ROOT

    result = subprocess.run(
        [sys.executable, "events.py"],
        cwd=ROOT / "examples",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "6 orders handled, each by one consumer" in result.stdout
