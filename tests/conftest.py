"""Fixtures shared by every test: real servers on free loopback ports.

A session-scoped server is shared by the tests of one run; a test that stops
or kills its server asks for a `*_factory` fixture and gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from _servers import (
    ServerProcess,
    etcd_server,
    nats_server,
    postgres_server,
    rabbitmq_server,
    redis_server,
    s3_server,
    serving,
)

if TYPE_CHECKING:
    from faults.cluster._clusters import RedisCluster

_MAKERS: dict[str, Callable[[], ServerProcess]] = {
    "redis": redis_server,
    "nats": nats_server,
    "etcd": etcd_server,
    "s3": s3_server,
    "rabbitmq": rabbitmq_server,
    "postgres": postgres_server,
}


def _serve(kind: str) -> Iterator[ServerProcess]:
    yield from serving(_MAKERS[kind]())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests (long soaks) are opt-in: they run only when `-m` names them."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[ServerProcess]:
    yield from _serve("redis")


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisCluster]:
    """One Redis Cluster per session (3 masters, 3 replicas): slow to start, so shared."""
    from faults.cluster._clusters import RedisCluster

    yield from serving(RedisCluster())


@pytest.fixture
def redis_cluster_url(redis_cluster_session: RedisCluster) -> str:
    """``redis+cluster://`` naming every node of the session's cluster (healthy)."""
    redis_cluster_session.wait_healthy()
    return redis_cluster_session.url()


@pytest.fixture(scope="session")
def nats_proc() -> Iterator[ServerProcess]:
    yield from _serve("nats")


@pytest.fixture(scope="session")
def etcd_proc() -> Iterator[ServerProcess]:
    yield from _serve("etcd")


@pytest.fixture(scope="session")
def s3_proc() -> Iterator[ServerProcess]:
    yield from _serve("s3")


@pytest.fixture(scope="session")
def rabbitmq_proc() -> Iterator[ServerProcess]:
    yield from _serve("rabbitmq")


@pytest.fixture
def amqp_url(rabbitmq_proc: ServerProcess) -> str:
    return f"amqp://guest:guest@127.0.0.1:{rabbitmq_proc.port}/"


@pytest.fixture(scope="session")
def postgres_proc() -> Iterator[ServerProcess]:
    yield from _serve("postgres")


@pytest.fixture
def redis_url(redis_proc: ServerProcess) -> str:
    return f"redis://127.0.0.1:{redis_proc.port}/0"


@pytest.fixture
def nats_url(nats_proc: ServerProcess) -> str:
    return f"nats://127.0.0.1:{nats_proc.port}"


@pytest.fixture
def etcd_url(etcd_proc: ServerProcess) -> str:
    return f"etcd://127.0.0.1:{etcd_proc.port}"


@pytest.fixture
def postgres_url(postgres_proc: ServerProcess) -> str:
    return f"postgresql://postgres@127.0.0.1:{postgres_proc.port}/postgres"


@pytest.fixture
def s3_endpoint(s3_proc: ServerProcess) -> str:
    return f"http://127.0.0.1:{s3_proc.port}"


@pytest.fixture
def server_factory() -> Iterator[Callable[[str], ServerProcess]]:
    """Private servers a test may stop, kill and restart: `server_factory("redis")`."""
    made: list[ServerProcess] = []

    def make(kind: str) -> ServerProcess:
        server = _MAKERS[kind]()
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.close()
