"""The pure twin behaves like the Rust core: same operations, same outcomes, same tokens."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microstd import _accel
from microstd.errors import LockLost
from microstd.sync._pure import PythonLockManager

pytestmark = pytest.mark.skipif(not _accel.AVAILABLE, reason="needs the Rust core")

NAMES = st.sampled_from(["a", "b", "c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("try"), NAMES),
        st.tuples(st.just("release"), st.integers(0, 7)),
        st.tuples(st.just("refresh"), st.integers(0, 7)),
        st.tuples(st.just("holder"), NAMES),
    ),
    max_size=40,
)


def _run(manager: Any, ops: list[tuple[str, Any]]) -> list[object]:
    leases: list[Any] = []
    seen: list[object] = []
    for op, arg in ops:
        if op == "try":
            lease = manager.try_acquire(arg, f"owner-{arg}", 60.0)
            seen.append(None if lease is None else lease.token)
            if lease is not None:
                leases.append(lease)
        elif op == "holder":
            held = manager.holder(arg)
            seen.append(None if held is None else held[:2])
        elif leases:
            lease = leases[arg % len(leases)]
            try:
                if op == "release":
                    lease.release()
                else:
                    lease.refresh(30.0)
                seen.append("ok")
            except LockLost:
                seen.append("lost")
    return seen


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_same_operations_same_outcomes(ops: list[tuple[str, Any]]) -> None:
    assert _accel.core is not None
    rust, python = _accel.core.RustLockManager(), PythonLockManager()
    try:
        assert _run(rust, ops) == _run(python, ops)
    finally:
        rust.close()
        python.close()
