"""Clustered engines under node failures: one real local cluster per engine per session.

Every test here is marked `cluster` (and `services`). The default run (`.ci/run`)
runs the short form: each test kills one node once. `pytest -m cluster
tests/faults/cluster` runs the long form: every node of the cluster in turn,
over a longer workload (`rounds()`).

A test that kills a node brings the cluster back to full health before the next
test gets it (`*_cluster` fixtures heal on the way out), and names its buckets,
keys and topics uniquely, since the cluster is shared. The failover costs the
tests measure (time from the kill to the first successful operation) are
printed at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from _servers import serving
from faults.cluster import _failover
from faults.cluster._clusters import EtcdCluster, NatsCluster, RedisCluster, SentinelCluster

_HERE = Path(__file__).parent


class _Healable(Protocol):
    def heal(self) -> None: ...


C = TypeVar("C", bound=_Healable)


def healed(cluster: C) -> Iterator[C]:
    """The body of a per-test cluster fixture: the session's cluster, healthy, and
    healed again after the test (which may have killed members)."""
    cluster.heal()
    yield cluster
    cluster.heal()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests `cluster` and `services`; choose short or long form."""
    _failover.LONG = "cluster" in (config.getoption("markexpr") or "")
    for item in items:
        if Path(str(item.fspath)).parent == _HERE:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.services)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = _failover.summary()
    if lines:
        terminalreporter.section("failover cost (from the kill to the first successful call)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def nats_cluster_session() -> Iterator[NatsCluster]:
    yield from serving(NatsCluster(3))


@pytest.fixture
def nats_cluster(nats_cluster_session: NatsCluster) -> Iterator[NatsCluster]:
    """The session's three-server NATS cluster, healthy; healed after the test."""
    yield from healed(nats_cluster_session)


@pytest.fixture(scope="session")
def sentinel_cluster_session() -> Iterator[SentinelCluster]:
    yield from serving(SentinelCluster())


@pytest.fixture
def sentinel_cluster(sentinel_cluster_session: SentinelCluster) -> Iterator[SentinelCluster]:
    """The session's Redis master + replica + three Sentinels, healthy; healed after."""
    yield from healed(sentinel_cluster_session)


@pytest.fixture(scope="session")
def etcd_cluster_session() -> Iterator[EtcdCluster]:
    yield from serving(EtcdCluster(3))


@pytest.fixture
def etcd_cluster(etcd_cluster_session: EtcdCluster) -> Iterator[EtcdCluster]:
    """The session's three-member etcd cluster, healthy; healed after the test."""
    yield from healed(etcd_cluster_session)


@pytest.fixture
def redis_cluster(redis_cluster_session: RedisCluster) -> Iterator[RedisCluster]:
    """The session's Redis Cluster (3 masters, 3 replicas; tests/conftest.py starts it
    for the contract suites too), healthy; healed after the test."""
    yield from healed(redis_cluster_session)
