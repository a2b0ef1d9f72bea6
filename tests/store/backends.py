"""Build the disk and network stores for tests, each isolated from every other test.

The contract suite imports this (`from store.backends import NET_KINDS, make_store`;
tests/ is on sys.path through its conftest) and parametrizes over `NET_KINDS`.
The servers come from the fixtures in tests/conftest.py, looked up by name, so a
kind only starts the server it needs.

For tests/contract/conftest.py (its `STORE_BACKENDS` maps an id to a function of
`request` returning `(url, options)`):

    from store.backends import NET_KINDS, WATCH, backend_url

    STORE_BACKENDS.update(
        {kind: (lambda request, kind=kind: backend_url(kind, request)) for kind in NET_KINDS}
    )
    NO_WATCH |= set(NET_KINDS) - WATCH
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import microstd.store
from microstd.store import Store, SyncStore

__all__ = [
    "ALL_KINDS",
    "EXPIRE_EVENTS",
    "NET_KINDS",
    "WATCH",
    "backend_url",
    "make_store",
    "make_sync_store",
]

#: The disk and network backends this module builds.
NET_KINDS = ("file", "redis", "nats", "s3", "postgres")
#: Every backend, the embedded Rust core and its pure twin included.
ALL_KINDS = ("memory-rust", "memory-python", *NET_KINDS)
#: Kinds whose `watch` works (S3 raises NotSupported).
WATCH = frozenset({"memory-rust", "memory-python", "file", "redis", "nats", "postgres"})
#: Kinds whose watch reports TTL expiry as "expire" events (redis: with expire_events=True).
EXPIRE_EVENTS = frozenset({"memory-rust", "memory-python", "file", "redis", "nats", "postgres"})

S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def backend_url(kind: str, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """A URL and options naming a fresh, empty store of `kind` for this test."""
    unique = uuid.uuid4().hex[:12]
    if kind.startswith("memory-"):
        return "memory://", {"impl": kind.removeprefix("memory-")}
    if kind == "file":
        tmp = request.getfixturevalue("tmp_path")
        return f"file://{tmp}/store-{unique}.db", {}
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return url, {"prefix": f"test:{unique}:", "expire_events": True}
    if kind == "nats":
        url = request.getfixturevalue("nats_url")
        return f"{url}?bucket=t{unique}", {}
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        return url, {"table": f"t{unique}"}
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        return f"s3://b{unique}?endpoint_url={endpoint}", {"create_bucket": True, **S3_CREDENTIALS}
    raise ValueError(f"unknown store kind {kind!r}")


async def make_store(kind: str, request: pytest.FixtureRequest) -> Store:
    """A connected async store of `kind`; the caller closes it."""
    url, options = backend_url(kind, request)
    store = microstd.store.open(url, **options)
    await store.connect()
    return store


def make_sync_store(kind: str, request: pytest.FixtureRequest) -> SyncStore:
    """A connected blocking store of `kind`; the caller closes it."""
    url, options = backend_url(kind, request)
    store = microstd.store.open_sync(url, **options)
    store.connect()
    return store
