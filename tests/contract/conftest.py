"""The backends the contract suites run on, in ONE place per area.

The suites themselves ship in the package (`microstd.testing.suites`): the
test_*_suite.py modules here run them, and a plugin author runs the same
ones with `pytest --microstd-store=URL`. What this file adds is this
project's backends, as the suites' target fixtures (`store_target`,
`broker_target`, `sync_target`, `registry_target`), each parametrized over
every backend of its area, Rust cores and pure twins included.

To add a backend, add an entry to the area's table: its test id, mapped to a
function that takes pytest's `request` (so it can ask for server fixtures
such as `redis_url`) and returns the URL (and, for stores, the options) to
open. `{unique}` in a URL becomes an id of its own per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from microstd.testing.targets import BrokerTarget, RegistryTarget, StoreTarget, SyncTarget
from store.backends import NET_KINDS, WATCH, backend_url

BackendSpec = Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]
UrlSpec = Callable[[pytest.FixtureRequest], str]

STORE_BACKENDS: dict[str, BackendSpec] = {
    "memory-rust": lambda request: ("memory://", {"impl": "rust"}),
    "memory-python": lambda request: ("memory://", {"impl": "python"}),
}

#: Backend ids whose `watch` raises NotSupported.
NO_WATCH: set[str] = set()

# The disk and network backends (tests/store/backends.py builds them, each test
# on a fresh store of its own).
STORE_BACKENDS.update(
    {kind: (lambda request, kind=kind: backend_url(kind, request)) for kind in NET_KINDS}
)
NO_WATCH |= set(NET_KINDS) - WATCH
# Redis Cluster: the session's local cluster (3 masters, 3 replicas); a store is one
# hash slot, its expire events come from that slot's master.
STORE_BACKENDS["redis-cluster"] = lambda request: (
    request.getfixturevalue("redis_cluster_url"),
    {"prefix": f"test:{uuid.uuid4().hex[:12]}:", "expire_events": True},
)

#: Backend ids on a real local cluster: marked `cluster` (with the tests of
#: tests/faults/cluster), so `-m cluster` runs them and `-m "not cluster"` skips them.
CLUSTER_IDS = {"redis-cluster"}


def _params(ids: object) -> list[Any]:
    return [
        pytest.param(i, marks=[pytest.mark.cluster, pytest.mark.services])
        if i in CLUSTER_IDS
        else i
        for i in ids  # type: ignore[attr-defined]
    ]


def _server(kind: str, query: str = "") -> UrlSpec:
    return lambda request: f"{request.getfixturevalue(f'{kind}_url')}{query}"


# Memory URLs name an instance per test, so every handle a suite opens shares it.
SYNC_BACKENDS: dict[str, UrlSpec] = {
    "memory-rust": lambda request: "memory://{unique}?impl=rust",
    "memory-python": lambda request: "memory://{unique}?impl=python",
    "redis": _server("redis", "?prefix={unique}:"),
    "etcd": _server("etcd", "?prefix={unique}/"),
    "postgres": _server("postgres"),
    "redis-cluster": _server("redis_cluster", "?prefix={unique}:"),
}
#: Lock backends that do not serve waiters strictly first come, first served.
NOT_FIFO = {"redis", "postgres", "redis-cluster"}
#: etcd rounds a lease up to whole seconds, with a floor of about 2 s.
SHORT_TTL = {"etcd": 2.0}

BROKER_BACKENDS: dict[str, UrlSpec] = {
    "memory-rust": lambda request: "memory://{unique}?impl=rust",
    "memory-python": lambda request: "memory://{unique}?impl=python",
    "file": lambda request: f"file://{request.getfixturevalue('tmp_path')}/broker.db",
    "redis": _server("redis"),
    "nats": _server("nats"),
    "postgres": _server("postgres"),
    "amqp": _server("amqp", "?exchange={unique}"),
    "redis-cluster": _server("redis_cluster", "?prefix={unique}:"),
}

REGISTRY_BACKENDS: dict[str, UrlSpec] = {
    "memory": lambda request: "memory://{unique}",
    "redis": _server("redis", "?prefix={unique}:"),
    "etcd": _server("etcd", "?prefix=/{unique}/"),
    "nats": _server("nats", "?bucket={unique}"),
    "postgres": _server("postgres", "?table={unique}"),
    "redis-cluster": _server("redis_cluster", "?prefix={unique}:"),
}


@pytest.fixture(params=_params(STORE_BACKENDS))
def store_target(request: pytest.FixtureRequest) -> StoreTarget:
    """Each store backend: a fresh, empty store per test."""
    url, options = STORE_BACKENDS[request.param](request)
    return StoreTarget.from_url(url, watch=request.param not in NO_WATCH, **options)


@pytest.fixture(params=_params(SYNC_BACKENDS))
def sync_target(request: pytest.FixtureRequest) -> SyncTarget:
    """Each lock backend, with locks of its own per test."""
    return SyncTarget.from_url(
        SYNC_BACKENDS[request.param](request),
        short_ttl=SHORT_TTL.get(request.param, 0.3),
        fifo=request.param not in NOT_FIFO,
    )


@pytest.fixture(params=_params(BROKER_BACKENDS))
def broker_target(request: pytest.FixtureRequest) -> BrokerTarget:
    """Each broker backend."""
    return BrokerTarget.from_url(BROKER_BACKENDS[request.param](request))


@pytest.fixture(params=_params(REGISTRY_BACKENDS))
def registry_target(request: pytest.FixtureRequest) -> RegistryTarget:
    """Each registry backend, empty per test."""
    return RegistryTarget.from_url(REGISTRY_BACKENDS[request.param](request))


# The suites' fixtures, built from the targets above.
from microstd.testing.fixtures import (  # noqa: E402
    broker,
    locks,
    prefix,
    reg,
    slocks,
    store,
    sync_broker,
    sync_reg,
    sync_store,
    watch_supported,
)

__all__ = [
    "BROKER_BACKENDS",
    "REGISTRY_BACKENDS",
    "STORE_BACKENDS",
    "SYNC_BACKENDS",
    "broker",
    "broker_target",
    "locks",
    "prefix",
    "reg",
    "registry_target",
    "slocks",
    "store",
    "store_target",
    "sync_broker",
    "sync_reg",
    "sync_store",
    "sync_target",
    "watch_supported",
]
