"""The registry under server faults, on Redis (AOF on), etcd and NATS JetStream.

Each test states its guarantee in its docstring; docs/guarantees.md quotes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import microstd.registry
from _servers import ServerProcess
from faults._proxy import FaultProxy
from faults._support import (
    FAST,
    FAST_NATS,
    HANG,
    eventually,
    fails_fast,
    never_hangs,
)
from microstd.errors import ConnectionFailed
from microstd.registry import Event, Node, Registry, ServiceRecord
from microstd.testing.suites.registry._watch_readiness import next_change, watch_started

pytestmark = pytest.mark.services

KINDS = ["redis", "etcd", "nats"]


def _open(kind: str, port: int) -> Registry:
    if kind == "redis":
        return microstd.registry.open(f"redis://127.0.0.1:{port}/0", **FAST)
    if kind == "etcd":
        return microstd.registry.open(f"etcd://127.0.0.1:{port}", **FAST)
    return microstd.registry.open(f"nats://127.0.0.1:{port}?bucket=faults", **FAST_NATS)


def _service(node: str) -> ServiceRecord:
    return ServiceRecord("greeter", "1", [Node(node, "127.0.0.1:8000")], ["Greeter.Hello"])


async def _nodes(registry: Registry) -> set[str]:
    return {n.id for s in await registry.lookup("greeter") for n in s.nodes}


async def _every_call_fails_fast(registry: Registry) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: registry.register(_service("n-during"), ttl=60),
        lambda: registry.lookup("greeter"),
        lambda: registry.list_services(),
        lambda: registry.deregister(_service("n-other")),
    ]
    for call in calls:
        await fails_fast(call())


async def _next(events: AsyncIterator[Event]) -> Event:
    """The next event that is not a probe of `watch_started`, or the watch's error."""
    return await never_hangs(next_change(events, HANG * 2), HANG * 2)


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_fail_fast_while_the_server_is_frozen(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server frozen (SIGSTOP): register, lookup, list and deregister raise
    ConnectionFailed within their timeouts; after the thaw the same registry works."""
    server = servers(kind)
    async with _open(kind, server.port) as registry:
        await registry.register(_service("n1"), ttl=60)
        server.pause()
        try:
            await _every_call_fails_fast(registry)
        finally:
            server.resume()
        await eventually(lambda: registry.register(_service("n2"), ttl=60))
        assert {"n1", "n2"} <= await _nodes(registry)


@pytest.mark.parametrize("kind", KINDS)
async def test_registrations_survive_a_kill(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed and restarted (persistence on): a registration acknowledged
    before the kill is found after it; calls fail fast while it is down; the same
    registry works again without reopening."""
    server = servers(kind)
    async with _open(kind, server.port) as registry:
        await registry.register(_service("n1"), ttl=60)
        server.kill()
        await _every_call_fails_fast(registry)
        server.start()
        assert "n1" in await eventually(lambda: _nodes(registry))
        await registry.register(_service("n2"), ttl=60)
        assert {"n1", "n2"} <= await _nodes(registry)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_watch_ends_with_an_error_when_its_server_dies(
    kind: str, servers: Callable[[str], ServerProcess]
) -> None:
    """Server killed under a watch: the watch ends with ConnectionFailed at its next
    re-read (within about `poll_interval` plus the timeouts), never stops silently."""
    server = servers(kind)
    async with _open(kind, server.port) as registry:
        events = registry.watch("greeter")
        await watch_started(registry, events, "greeter")
        await registry.register(_service("n1"), ttl=60)
        created = await _next(events)
        assert (created.kind, created.service.nodes[0].id) == ("create", "n1")
        server.kill()
        with pytest.raises(ConnectionFailed):
            await _next(events)
        await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_watch_goes_on_across_a_cut_connection(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Connections reset (through the proxy) while the server stays up: the watch
    goes on and reports a registration made after the cut."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as watching, _open(kind, server.port) as writer:
        events = watching.watch("greeter")
        await watch_started(writer, events, "greeter")
        await writer.register(_service("n1"), ttl=60)
        assert (await _next(events)).service.nodes[0].id == "n1"
        proxy.drop()
        await writer.register(_service("n2"), ttl=60)
        event = await _next(events)
        assert (event.kind, event.service.nodes[0].id) == ("create", "n2")
        await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_fail_fast_through_a_stalled_connection(
    kind: str, servers: Callable[[str], ServerProcess], proxies: Callable[..., FaultProxy]
) -> None:
    """Network stalled: every call raises ConnectionFailed within its timeout, and a
    watch ends with ConnectionFailed; once traffic flows the same registry works."""
    server = servers(kind)
    proxy = proxies(server)
    async with _open(kind, proxy.port) as registry:
        await registry.register(_service("n1"), ttl=60)
        events = registry.watch("greeter")
        await watch_started(registry, events, "greeter")  # the stall hits a running watch
        waiting = asyncio.ensure_future(_next(events))
        proxy.stall()
        try:
            await _every_call_fails_fast(registry)
            with pytest.raises(ConnectionFailed):
                await waiting
        finally:
            proxy.resume()
        await events.aclose()  # type: ignore[attr-defined]
        await eventually(lambda: registry.register(_service("n2"), ttl=60))
        assert {"n1", "n2"} <= await _nodes(registry)
