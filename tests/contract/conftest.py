"""Backends the store contract runs on, in ONE place.

To add a backend, add an entry to `STORE_BACKENDS`: its test id, mapped to a
function that takes pytest's `request` (so it can ask for server fixtures
such as `redis_url`) and returns the URL and options to open. A backend that
cannot watch goes in `NO_WATCH`: the watch tests then check it raises
`NotSupported`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import microstd.store
from microstd.store import Store, SyncStore
from store.backends import NET_KINDS, WATCH, backend_url

BackendSpec = Callable[[pytest.FixtureRequest], tuple[str, dict[str, Any]]]

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


@pytest.fixture(params=list(STORE_BACKENDS))
def store_backend(request: pytest.FixtureRequest) -> str:
    """The id of the backend under test."""
    backend: str = request.param
    return backend


@pytest.fixture
def watch_supported(store_backend: str) -> bool:
    """False for backends whose watch raises NotSupported."""
    return store_backend not in NO_WATCH


@pytest.fixture
async def store(store_backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """An open async store of each backend."""
    url, options = STORE_BACKENDS[store_backend](request)
    s = microstd.store.open(url, **options)
    await s.connect()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def sync_store(store_backend: str, request: pytest.FixtureRequest) -> Iterator[SyncStore]:
    """An open blocking store of each backend."""
    url, options = STORE_BACKENDS[store_backend](request)
    s = microstd.store.open_sync(url, **options)
    s.connect()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so backends on a shared server stay independent."""
    return f"t-{uuid.uuid4().hex[:10]}/"


# ---- the other areas' backends (used by test_validation.py; the same ids as their suites) ----

UrlSpec = Callable[[pytest.FixtureRequest], str]


def _server(kind: str, query: str = "") -> UrlSpec:
    return lambda request: f"{request.getfixturevalue(f'{kind}_url')}{query}"


def _tag() -> str:
    return uuid.uuid4().hex[:10]


SYNC_BACKENDS: dict[str, UrlSpec] = {
    "memory-rust": lambda request: "memory://?impl=rust",
    "memory-python": lambda request: "memory://?impl=python",
    "redis": _server("redis"),
    "etcd": _server("etcd"),
    "postgres": _server("postgres"),
}

BROKER_BACKENDS: dict[str, UrlSpec] = {
    "memory-rust": lambda request: "memory://?impl=rust",
    "memory-python": lambda request: "memory://?impl=python",
    "redis": _server("redis"),
    "nats": _server("nats"),
    "postgres": _server("postgres"),
}

REGISTRY_BACKENDS: dict[str, UrlSpec] = {
    "memory": lambda request: "memory://",
    "redis": lambda request: f"{request.getfixturevalue('redis_url')}?prefix=t{_tag()}:",
    "etcd": lambda request: f"{request.getfixturevalue('etcd_url')}?prefix=/t{_tag()}/",
    "nats": lambda request: f"{request.getfixturevalue('nats_url')}?bucket=t{_tag()}",
    "postgres": lambda request: f"{request.getfixturevalue('postgres_url')}?table=t{_tag()}",
}
