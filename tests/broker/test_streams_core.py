"""The durable stream cores, Rust and twin, driven directly: the same operations give
the same deliveries and the same counts (timers aside, which need a clock)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd import _accel
from microstd.broker._streams_pure import PythonStreams
from microstd.broker.base import Message

pytestmark = pytest.mark.skipif(not _accel.AVAILABLE, reason="the Rust extension is not built")


class _Settler:
    """Stands in for the subscription's settler: nack and term go straight to the core."""

    def nack(self, message: Any, delay: float | None, error: object) -> None:
        message.settle("nack", 0.0)

    def term(self, message: Any, error: object) -> None:
        message.settle("term", dead=True)


def _cores() -> list[Any]:
    assert _accel.core is not None
    return [_accel.core.RustStreams(), PythonStreams()]


def _setup(core: Any) -> tuple[int, list[list[Any]], list[int]]:
    core.add_stream("s", ["t.>"], None, 5, None)
    cid = core.consumer("s", "d", "t.*", 3600.0, "first", 0.0, 0)
    inboxes: list[list[Any]] = [[], [], []]
    mids = [core.attach(cid, box.append, 2, _Settler()) for box in inboxes]
    return cid, inboxes, mids


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.sampled_from(["t.a", "t.b", "t.a.x", "u.a"])),
        st.tuples(
            st.sampled_from(["ack", "nack", "release", "term", "progress"]), st.integers(0, 2)
        ),
        st.tuples(st.sampled_from(["pause", "detach"]), st.integers(0, 2)),
    ),
    max_size=60,
)


def _run(core: Any, ops: list[tuple[str, Any]]) -> list[Any]:
    _, inboxes, mids = _setup(core)
    trace: list[Any] = []
    n = 0
    for op, arg in ops:
        if op == "store":
            n += 1
            core.store(Message(arg, str(n).encode()))
        elif op in ("pause", "detach"):
            getattr(core, op)(mids[arg])
        else:
            box = inboxes[arg]
            if not box:
                continue
            message = box.pop(0)
            if op == "ack":
                message.ack()
            elif op == "nack":
                message.nack()
            elif op == "term":
                message.term()
            elif op == "release":
                message.settle("release")
            else:
                message.in_progress()
        trace.append([[(m.data, m.delivery_count, m.id.split(":")[1]) for m in b] for b in inboxes])
        trace.append(core.info()[0]["durables"][0])
    trace.append({k: v for k, v in core.info()[0].items() if k != "durables"})
    return trace


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_rust_and_twin_streams_agree(ops: list[tuple[str, Any]]) -> None:
    rust, twin = _cores()
    assert _run(rust, ops) == _run(twin, ops)


def test_messages_are_equal_across_cores_and_to_a_plain_message() -> None:
    got: list[list[Any]] = [[], []]
    for core, box in zip(_cores(), got, strict=True):
        core.add_stream("s", ["a.b"], None, None, None)
        cid = core.consumer("s", "d", "a.b", 30.0, "new", 0.0, 0)
        core.attach(cid, box.append, 10, _Settler())
        core.store(Message("a.b", b"x", {"h": "v"}, "text/plain"))
    rust_message, twin_message = got[0][0], got[1][0]
    plain = Message("a.b", b"x", {"h": "v"}, "text/plain")
    assert rust_message == twin_message == plain
    assert rust_message.id == twin_message.id == "s:1"
    assert isinstance(rust_message, Message)
    assert rust_message.decode() == twin_message.decode() == "x"
    rust_message.ack()
    rust_message.ack()
    assert rust_message.settled
