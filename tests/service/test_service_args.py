"""`Service`'s backends: a URL or an open async handle of the right area, nothing else."""

from __future__ import annotations

import pytest

import microstd
from microstd.errors import InvalidArgument


def test_a_blocking_handle_or_another_object_is_refused() -> None:
    blocking = microstd.broker.open_sync("memory://")
    with blocking, pytest.raises(InvalidArgument, match="a URL or an open async Broker"):
        microstd.Service("svc", broker=blocking)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="store must be a URL or an open async Store"):
        microstd.Service("svc", store=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="locks must be a URL or an open async Locks"):
        microstd.Service("svc", locks=microstd.broker.open("memory://"))  # type: ignore[arg-type]


async def test_the_handles_given_are_the_handles_used() -> None:
    broker = microstd.broker.open("memory://")
    store = microstd.store.open("memory://")
    svc = microstd.Service("svc", broker=broker, store=store, locks="memory://svc-args")
    assert svc.broker is broker
    assert svc.store is store
    assert isinstance(svc.locks, microstd.sync.Locks)
    await svc.locks.close()
