"""Knowing that a registry watch has started, for the tests that watch.

A watch reports the changes after it took its starting view, and nothing tells
when that was: a node registered just before is part of the view, not an event,
and on a loaded machine a fixed head start (`sleep(0.2)`) was not always enough.
So a test registers probe nodes, a new one a second, until the watch reports
one; its later reads skip the probes (any registered after the view is reported
once, as created, perhaps after the one that was awaited).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from microstd.registry import Event, Node, Registry, ServiceRecord

__all__ = ["PROBE_PREFIX", "is_probe", "next_change", "watch_started"]

#: The node ids of probes start with this; a test's own nodes must not.
PROBE_PREFIX = "probe-"
# Probes registered at most, one a second: a watch that reports none is broken.
_PROBES = 20


def is_probe(event: Event) -> bool:
    """True for an event about a probe node."""
    return any(node.id.startswith(PROBE_PREFIX) for node in event.service.nodes)


async def watch_started(
    registry: Registry, events: AsyncIterator[Event], name: str, *, ttl: float = 30.0
) -> Event:
    """Register probe nodes of service `name` until `events` (a watch that reports
    that service) reports one; return that event, the watch's first. The probes
    stay registered for `ttl` seconds."""
    first = asyncio.ensure_future(_next(events, _PROBES + 10.0))
    try:
        for i in range(_PROBES):
            probe = ServiceRecord(name, "1.0", [Node(f"{PROBE_PREFIX}{i}", "127.0.0.1:9")])
            await registry.register(probe, ttl=ttl)
            done, _ = await asyncio.wait({first}, timeout=1.0)
            if done:
                break
        event = await first
    finally:
        first.cancel()  # only when the registering failed: the read must not linger
    assert is_probe(event), event
    assert event.kind == "create", event
    return event


async def next_change(events: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    """The next event of `events` that is not about a probe (probes reported late
    are skipped, and must be reported as created); fails after `timeout` seconds."""
    while True:
        event = await _next(events, timeout)
        if not is_probe(event):
            return event
        assert event.kind == "create", event


async def _next(events: AsyncIterator[Event], timeout: float) -> Event:
    return await asyncio.wait_for(events.__anext__(), timeout)
