"""The memory backend and its two routing cores beyond the contract suite."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import microstd.broker
from microstd import _accel
from microstd.broker import Message
from microstd.broker._pure import PythonBroker
from microstd.broker._subjects import matches, validate_pattern, validate_subject
from microstd.errors import Closed, InvalidTopic

IMPLS = ["rust", "python"]


def cores() -> list[object]:
    found: list[object] = [PythonBroker()]
    if _accel.core is not None:
        found.append(_accel.core.RustBroker())
    return found


@pytest.mark.parametrize("impl", IMPLS)
def test_sync_delivery_is_inline_in_publish(impl: str) -> None:
    with microstd.broker.open_sync("memory://", impl=impl) as b:
        seen: list[str] = []
        b.subscribe("x.*", lambda m: seen.append(threading.current_thread().name))
        b.publish("x.y", b"")
        assert seen == [threading.current_thread().name]


@pytest.mark.parametrize("impl", IMPLS)
async def test_named_instances_are_shared_across_surfaces(impl: str) -> None:
    name = f"memory://{uuid.uuid4().hex}"
    got: list[object] = []
    async with microstd.broker.open(name, impl=impl) as a:
        await a.subscribe("s.>", lambda m: got.append(m.decode()))
        with microstd.broker.open_sync(name, impl=impl) as s:
            s.publish("s.1", "from sync")
        await a.publish("s.2", "from async")
        async with microstd.broker.open("memory://", impl=impl) as private:
            await private.publish("s.3", "unseen")
        await asyncio.sleep(0.01)
    assert got == ["from sync", "from async"]


@pytest.mark.parametrize("impl", IMPLS)
async def test_block_overflow_makes_the_publisher_wait(impl: str) -> None:
    release = asyncio.Event()
    got: list[int] = []

    async def gated(m: Message) -> None:
        await release.wait()
        value = m.decode()
        assert isinstance(value, int)
        got.append(value)

    async with microstd.broker.open("memory://", impl=impl, max_pending=2) as b:
        sub = await b.subscribe("b", gated)

        async def publish_all() -> None:
            for i in range(6):
                await b.publish("b", i)

        task = asyncio.create_task(publish_all())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        release.set()
        await asyncio.wait_for(task, 5)
    assert got == list(range(6))
    assert sub.dropped == 0


@pytest.mark.parametrize("impl", IMPLS)
async def test_closed_broker_refuses_work(impl: str) -> None:
    b = microstd.broker.open("memory://", impl=impl)
    await b.close()
    with pytest.raises(Closed):
        await b.publish("a", b"")
    with pytest.raises(Closed):
        await b.subscribe("a", print)
    with pytest.raises(ValueError):
        microstd.broker.open("memory://", impl=impl, overflow="sometimes")


class _Stuck:
    """A handler that refers back to its broker (the usual cycle) and never returns."""

    def __init__(self, broker: microstd.broker.Broker) -> None:
        self.broker = broker
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, m: Message) -> None:
        self.started.set()
        await self.release.wait()


@pytest.mark.parametrize("durable", [None, "d"])
@pytest.mark.parametrize("impl", IMPLS)
def test_a_broker_dropped_without_close_is_collected(impl: str, durable: str | None) -> None:
    """The Rust core's objects holding handlers take part in garbage collection."""

    async def run() -> weakref.ref[_Stuck]:
        broker = microstd.broker.open("memory://", impl=impl)
        handler = _Stuck(broker)
        await broker.subscribe("gc.*", handler, durable=durable)
        for i in range(3):  # one in the handler, the rest queued
            await broker.publish("gc.x", i)
        await handler.started.wait()
        return weakref.ref(handler)

    loop = asyncio.new_event_loop()
    try:
        ref = loop.run_until_complete(run())
        gc.collect()
        assert ref() is None, "the broker, its handler and their cycle are still alive"
    finally:
        loop.close()


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_unsubscribe_during_fan_out_skips_the_removed(core: object) -> None:
    calls: list[str] = []
    ids: dict[str, int] = {}

    def first(m: object) -> None:
        calls.append("first")
        core.unsubscribe(ids["second"])  # type: ignore[attr-defined]
        ids["third"] = core.subscribe("a", None, lambda m: calls.append("third"), "o")  # type: ignore[attr-defined]

    ids["first"] = core.subscribe("a", None, first, "o")  # type: ignore[attr-defined]
    ids["second"] = core.subscribe("a", None, lambda m: calls.append("second"), "o")  # type: ignore[attr-defined]
    assert core.publish("a", None) == ()  # type: ignore[attr-defined]
    assert calls == ["first"]
    core.publish("a", None)  # type: ignore[attr-defined]
    assert calls == ["first", "first", "third"]


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_core_reports_errors_with_their_owner(core: object) -> None:
    reported: list[tuple[str, object]] = []
    core.set_on_error(lambda exc, owner: reported.append((str(exc), owner)))  # type: ignore[attr-defined]

    def bad(m: object) -> None:
        raise RuntimeError("nope")

    core.subscribe("a.*", None, bad, "owner-1")  # type: ignore[attr-defined]
    hits: list[object] = []
    core.subscribe("a.*", None, hits.append, "owner-2")  # type: ignore[attr-defined]
    assert core.publish("a.b", "m") == ()  # type: ignore[attr-defined]
    assert reported == [("nope", "owner-1")]
    assert hits == ["m"]
    with pytest.raises(InvalidTopic):
        core.publish("a.*", "m")  # type: ignore[attr-defined]
    with pytest.raises(InvalidTopic):
        core.subscribe("a.>.c", None, hits.append, "o")  # type: ignore[attr-defined]


_token = st.sampled_from(["a", "b", "c"])
_pattern_token = st.sampled_from(["a", "b", "c", "*"])


@st.composite
def _pattern(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(_pattern_token, min_size=1, max_size=4))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


@pytest.mark.skipif(_accel.core is None, reason="needs the Rust core to compare against")
@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(st.tuples(_pattern(), st.sampled_from([None, "q", "r"])), max_size=12),
    subjects=st.lists(st.lists(_token, min_size=1, max_size=5).map(".".join), max_size=12),
    drop=st.lists(st.integers(0, 11), max_size=4),
)
def test_rust_core_and_twin_route_identically(
    patterns: list[tuple[str, str | None]], subjects: list[str], drop: list[int]
) -> None:
    assert _accel.core is not None
    twins = [PythonBroker(), _accel.core.RustBroker()]
    logs: list[list[tuple[str, int]]] = [[], []]
    for log, core in zip(logs, twins, strict=True):
        sids = [
            core.subscribe(p, q, lambda m, i=i, log=log: log.append((m, i)), i)
            for i, (p, q) in enumerate(patterns)
        ]
        for d in drop:
            if d < len(sids):
                core.unsubscribe(sids[d])
        for s in subjects * 2:
            core.publish(s, s)
    assert logs[0] == logs[1]
    # And the plain subscribers match exactly what the reference matcher says.
    live = {i for i in range(len(patterns)) if i not in drop}
    for s in subjects:
        want = {i for i in live if patterns[i][1] is None and matches(patterns[i][0], s)}
        got = {i for m, i in logs[0] if m == s and patterns[i][1] is None}
        assert got == want


def test_pure_validation_agrees_with_rust() -> None:
    if _accel.core is None:
        pytest.skip("needs the Rust core to compare against")
    samples = ["", "a", "a.b", "a..b", ".a", "a.", "*", ">", "a.*", "a.>", "a.>.b", "a b", "a*b"]
    # Whitespace as `str.isspace` sees it (U+001C..U+001F too), control characters and non-ASCII.
    samples += ["a\x1cb", "a\x1f", "a\u3000b", "a\x85", "a\x01b", "caf\xe9.x", "*a.>b"]
    for s in samples:
        for pure, rust in (
            (validate_subject, _accel.core.validate_subject),
            (validate_pattern, _accel.core.validate_pattern),
        ):
            outcomes = []
            for fn in (pure, rust):
                try:
                    fn(s)
                    outcomes.append(True)
                except InvalidTopic:
                    outcomes.append(False)
            assert outcomes[0] == outcomes[1], (s, pure.__name__)


def queues() -> list[type]:
    from microstd.broker._pure import PythonQueue

    found: list[type] = [PythonQueue]
    if _accel.core is not None:
        found.append(_accel.core.RustQueue)
    return found


@pytest.mark.parametrize("kind", queues(), ids=lambda k: k.__name__)
def test_subscriber_queue_rules(kind: type) -> None:
    wakes: list[int] = []
    drop = kind(2, True, lambda: wakes.append(1))
    pushed = [drop.push(i) for i in range(5)]
    assert pushed == [False] * 5, "the drop policy never holds a publisher back"
    assert (drop.take(), drop.dropped, wakes) == ([0, 1], 3, [1])
    assert drop.take() == []
    drop.push(9)
    assert wakes == [1, 1], "an empty take leaves the queue idle, so the next push wakes"
    block = kind(1, False, lambda: None)
    assert block.push("a") is False
    assert block.push("b") is True, "past its bound: the publisher should wait"
    assert block.over()
    assert len(block) == 2
    block.close(False)
    assert block.push("c") is False
    assert block.take() == ["a", "b"]
    block.close(True)
    assert len(block) == 0


@pytest.mark.parametrize("impl", IMPLS)
async def test_async_handlers_that_suspend_raise_or_return_awaitables(impl: str) -> None:
    errors: list[str] = []
    got: list[str] = []
    loop = asyncio.get_running_loop()

    async def suspends_then_raises(m: Message) -> None:
        await asyncio.sleep(0)
        got.append("before")
        raise LookupError("late")

    async def returns_value(m: Message) -> int:
        await asyncio.sleep(0)
        got.append("value")
        return 42

    def returns_future(m: Message) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()
        loop.call_soon(fut.set_result, None)
        got.append("future")
        return fut

    async with microstd.broker.open("memory://", impl=impl) as b:
        b.on_error(lambda exc, sub: errors.append(str(exc)))
        await b.subscribe("s", suspends_then_raises)
        await b.subscribe("s", returns_value)  # type: ignore[arg-type]
        await b.subscribe("s", returns_future)  # type: ignore[arg-type]
        await b.publish("s", b"")
        await b.publish("s", b"")
        for _ in range(100):
            await asyncio.sleep(0)
    assert sorted(got) == sorted(["before", "value", "future"] * 2)
    assert errors == ["late", "late"]


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_stuck_handler_is_cancelled_by_close(impl: str) -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def forever(m: Message) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    b = microstd.broker.open("memory://", impl=impl, drain_timeout=0.05)
    await b.subscribe("s", forever)
    await b.publish("s", b"")
    await started.wait()
    await b.close()
    assert cancelled == [True]


def _queue(core: object, max_pending: int, drop: bool) -> object:
    if isinstance(core, PythonBroker):
        from microstd.broker._pure import PythonQueue

        return PythonQueue(max_pending, drop, lambda: None)  # subscribed by its push
    assert _accel.core is not None
    return _accel.core.RustQueue(max_pending, drop, lambda: None)


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_back_pressure_is_what_the_fan_out_returns(core: object) -> None:
    """A publish returns the owners of the queues it left past their bound (block
    policy), and nothing else: no thread-local state to read or to leak."""
    blocking = _queue(core, 2, drop=False)
    dropping = _queue(core, 2, drop=True)
    # What a delivery hands the core: the Rust queue itself, the twin queue's push.
    native = not isinstance(core, PythonBroker)
    for queue, owner in ((blocking, "blocked-owner"), (dropping, "dropping-owner")):
        core.subscribe("a", None, queue if native else queue.push, owner)  # type: ignore[attr-defined]
    core.subscribe("a", None, lambda m: True, "handler-owner")  # type: ignore[attr-defined]
    assert core.publish("a", 1) == ()  # type: ignore[attr-defined]
    assert core.publish("a", 2) == ()  # type: ignore[attr-defined]
    # The third message passes the bound: the blocking queue keeps it and says so;
    # the dropping queue drops it; a handler's own return value means nothing.
    assert core.publish("a", 3) == ("blocked-owner",)  # type: ignore[attr-defined]
    assert core.send("a", b"4") == ("blocked-owner",)  # type: ignore[attr-defined]
    taken = blocking.take()  # type: ignore[attr-defined]
    assert taken[:3] == [1, 2, 3]
    assert len(taken) == 4
    assert dropping.take() == [1, 2]  # type: ignore[attr-defined]


@pytest.mark.skipif(not _accel.AVAILABLE, reason="the outcomes of the Rust queue's run")
def test_the_queue_run_outcomes_are_named_in_the_core() -> None:
    from microstd.broker._delivery import run_outcomes

    assert _accel.core is not None
    core = _accel.core
    names = ("RUN_DONE", "RUN_RAISED", "RUN_AWAIT", "RUN_STOPPED", "RUN_OVER_DELIVERED")
    assert run_outcomes() == tuple(getattr(core, name) for name in names)
    assert len(set(run_outcomes())) == 5
    queue = core.RustQueue(10, False, lambda: None)

    def boom(m: object) -> None:
        raise KeyError(m)

    assert queue.run(print, [], 0)[1] == core.RUN_DONE
    index, outcome, error = queue.run(boom, ["x"], 0)
    assert (index, outcome, type(error)) == (0, core.RUN_RAISED, KeyError)
    assert queue.run(lambda m: asyncio.sleep(0), ["x"], 0)[1] == core.RUN_AWAIT
    queue.close(True)
    assert queue.run(print, ["x"], 0)[1] == core.RUN_STOPPED
