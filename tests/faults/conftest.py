"""Fault injection: each test gets its own servers, and a proxy it can cut.

    async def test_x(servers, proxies):
        server = servers("redis")                 # persistence on: AOF / JetStream file store
        proxy = proxies(server)                   # 127.0.0.1:proxy.port -> server
        server.pause(); server.resume()           # SIGSTOP / SIGCONT
        server.kill(); server.start()             # same port, data kept on disk
        proxy.stall(); proxy.resume(); proxy.drop()

Clients under test use short timeouts (`faults._support.FAST`), so a failure
must show within seconds; `never_hangs` bounds every call that must fail or
succeed, and is the only time limit the tests use: a generous bound that
separates "failed within its timeout" from "hung".

Tests marked `faults_long` (outages of a minute or more) run only when asked
for: `pytest -m faults_long tests/faults`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from _servers import (
    ServerProcess,
    etcd_server,
    nats_server,
    postgres_server,
    rabbitmq_server,
    redis_server,
)
from faults._proxy import FaultProxy

_MAKERS: dict[str, Callable[[], ServerProcess]] = {
    "redis": lambda: redis_server(appendonly=True),
    "nats": nats_server,
    "etcd": etcd_server,
    "postgres": postgres_server,
    "amqp": rabbitmq_server,  # a private node (slow to start): for tests that kill it
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the long fault tests unless the marker expression asks for them."""
    if "faults_long" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("faults_long") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def servers() -> Iterator[Callable[[str], ServerProcess]]:
    """`servers(kind)`: a private, started server of `kind` ("redis", "nats", "etcd",
    "postgres", "amqp"),
    with persistence on; closed (thawed first) when the test ends."""
    made: list[ServerProcess] = []

    def make(kind: str) -> ServerProcess:
        server = _MAKERS[kind]()
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def proxies() -> Iterator[Callable[[ServerProcess], FaultProxy]]:
    """`proxies(server)`: a `FaultProxy` in front of `server`; closed when the test ends."""
    made: list[FaultProxy] = []

    def make(server: ServerProcess) -> FaultProxy:
        proxy = FaultProxy(server.port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
