"""One table of bad arguments, on every backend of every area.

The same bad ttl, wait, key or name must raise the same class with the same
message whichever backend gets it: the Rust cores, their pure twins and the
network backends all apply `microstd._validate`. The tables below are the
contract; each row runs on every backend, on the async and the blocking
surface (the blocking memory surface calls straight into the Rust core).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from conftest import BROKER_BACKENDS, REGISTRY_BACKENDS, STORE_BACKENDS, SYNC_BACKENDS
from microstd import _accel
from microstd.errors import (
    InvalidArgument,
    InvalidKey,
    InvalidTopic,
    MicrostdError,
    NotSupported,
)
from microstd.registry import Node, Service

Row = tuple[object, type[MicrostdError], str]

_TTL_TYPE = "ttl must be a number of seconds, got {}"
_TTL_VALUE = "ttl must be a finite number of seconds > 0, got {}"

#: (bad ttl, class, message): the same in every area that takes a ttl.
BAD_TTLS: list[Row] = [
    ("10", InvalidArgument, _TTL_TYPE.format("str")),
    (True, InvalidArgument, _TTL_TYPE.format("bool")),
    (b"1", InvalidArgument, _TTL_TYPE.format("bytes")),
    ([1], InvalidArgument, _TTL_TYPE.format("list")),
    (0, InvalidArgument, _TTL_VALUE.format("0")),
    (0.0, InvalidArgument, _TTL_VALUE.format("0.0")),
    (-1, InvalidArgument, _TTL_VALUE.format("-1")),
    (-2.5, InvalidArgument, _TTL_VALUE.format("-2.5")),
    (math.nan, InvalidArgument, _TTL_VALUE.format("nan")),
    (math.inf, InvalidArgument, _TTL_VALUE.format("inf")),
    (-math.inf, InvalidArgument, _TTL_VALUE.format("-inf")),
    (-(10**30), InvalidArgument, _TTL_VALUE.format(-(10**30))),
    (10**400, InvalidArgument, _TTL_VALUE.format(10**400)),
]

_WAIT_TYPE = "wait must be None or a number of seconds, got {}"
_WAIT_VALUE = "wait must be None or a finite number of seconds >= 0, got {}"

#: (bad wait, class, message) for lock and election waits.
BAD_WAITS: list[Row] = [
    ("1", InvalidArgument, _WAIT_TYPE.format("str")),
    (False, InvalidArgument, _WAIT_TYPE.format("bool")),
    (-1, InvalidArgument, _WAIT_VALUE.format("-1")),
    (-0.5, InvalidArgument, _WAIT_VALUE.format("-0.5")),
    (math.nan, InvalidArgument, _WAIT_VALUE.format("nan")),
    (math.inf, InvalidArgument, _WAIT_VALUE.format("inf")),
]


def bad_names(what: str) -> list[Row]:
    """(bad key or name, class, message) for a kind of key: "store keys", "lock names"."""
    return [
        ("", InvalidKey, f"{what} must not be empty"),
        (1, InvalidKey, f"{what} are str, got int"),
        (None, InvalidKey, f"{what} are str, got NoneType"),
        (b"key", InvalidKey, f"{what} are str, got bytes"),
        (("a",), InvalidKey, f"{what} are str, got tuple"),
        ("a\ud800b", InvalidKey, f"{what} must be valid Unicode (no lone surrogates)"),
    ]


BAD_STORE_KEYS = bad_names("store keys")
BAD_LOCK_NAMES = bad_names("lock names")
BAD_SERVICE_NAMES: list[Row] = [
    *bad_names("service names"),
    (
        "bad name*",
        InvalidKey,
        "service names are dot-separated tokens of [A-Za-z0-9_-] (at most 200 characters),"
        " got 'bad name*'",
    ),
    (
        "a..b",
        InvalidKey,
        "service names are dot-separated tokens of [A-Za-z0-9_-] (at most 200 characters),"
        " got 'a..b'",
    ),
]
BAD_TOPICS: list[Row] = [
    ("", InvalidTopic, "topic must not be empty"),
    (1, InvalidTopic, "topic must be a str, got int"),
    ("a..b", InvalidTopic, "topic 'a..b' has an empty token"),
    ("a b", InvalidTopic, "topic 'a b' contains whitespace"),
    ("it's.x y", InvalidTopic, 'topic "it\'s.x y" contains whitespace'),
    ("a.*", InvalidTopic, "topic 'a.*' contains a wildcard; wildcards are for subscriptions"),
]
BAD_PATTERNS: list[Row] = [
    ("", InvalidTopic, "pattern must not be empty"),
    ("a..b", InvalidTopic, "pattern 'a..b' has an empty token"),
    ("a.>.b", InvalidTopic, "pattern 'a.>.b': '>' must be the last token"),
]


def _ids(rows: list[Row]) -> list[str]:
    return [repr(value)[:24] for value, _, _ in rows]


def _raises(cls: type[Exception], message: str) -> Any:
    return pytest.raises(cls, match=f"^{re.escape(message)}$")


def _name() -> str:
    return f"v-{uuid.uuid4().hex[:8]}"


# ---- fixtures: one per area, over that area's backends ------------------------


@pytest.fixture(params=list(STORE_BACKENDS))
def store_url(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return STORE_BACKENDS[request.param](request)


@pytest.fixture
async def store(store_url: tuple[str, dict[str, Any]]) -> AsyncIterator[microstd.store.Store]:
    url, options = store_url
    async with microstd.store.open(url, **options) as opened:
        yield opened


@pytest.fixture
def sync_store(store_url: tuple[str, dict[str, Any]]) -> Iterator[microstd.store.SyncStore]:
    url, options = store_url
    with microstd.store.open_sync(url, **options) as opened:
        yield opened


@pytest.fixture(params=list(SYNC_BACKENDS))
def locks_url(request: pytest.FixtureRequest) -> str:
    return SYNC_BACKENDS[request.param](request)


@pytest.fixture
async def locks(locks_url: str) -> AsyncIterator[microstd.sync.Locks]:
    async with microstd.sync.open(locks_url) as opened:
        yield opened


@pytest.fixture
def sync_locks(locks_url: str) -> Iterator[microstd.sync.SyncLocks]:
    with microstd.sync.open_sync(locks_url) as opened:
        yield opened


@pytest.fixture(params=list(REGISTRY_BACKENDS))
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[microstd.registry.Registry]:
    async with microstd.registry.open(REGISTRY_BACKENDS[request.param](request)) as opened:
        yield opened


@pytest.fixture(params=list(BROKER_BACKENDS))
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[microstd.broker.Broker]:
    async with microstd.broker.open(BROKER_BACKENDS[request.param](request)) as opened:
        yield opened


# ---- store ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "cls", "message"), BAD_STORE_KEYS, ids=_ids(BAD_STORE_KEYS))
async def test_store_bad_keys(
    store: microstd.store.Store, key: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await store.write(key, 1)
    with _raises(cls, message):
        await store.read(key)
    with _raises(cls, message):
        await store.write_many({key: 1})


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=_ids(BAD_TTLS))
async def test_store_bad_ttls(
    store: microstd.store.Store, ttl: Any, cls: type[Exception], message: str
) -> None:
    key = _name()
    with _raises(cls, message):
        await store.write(key, 1, ttl=ttl)
    with _raises(cls, message):
        await store.write_many({key: 1}, ttl=ttl)
    assert not await store.exists(key), "a refused write stores nothing"


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=_ids(BAD_TTLS))
def test_store_bad_ttls_blocking(
    sync_store: microstd.store.SyncStore, ttl: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        sync_store.write(_name(), 1, ttl=ttl)


@pytest.mark.parametrize(("key", "cls", "message"), BAD_STORE_KEYS, ids=_ids(BAD_STORE_KEYS))
def test_store_bad_keys_blocking(
    sync_store: microstd.store.SyncStore, key: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        sync_store.write(key, 1)


# ---- sync ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls", "message"), BAD_LOCK_NAMES, ids=_ids(BAD_LOCK_NAMES))
async def test_locks_bad_names(
    locks: microstd.sync.Locks, name: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await locks.acquire(name, ttl=1.0)
    with _raises(cls, message):
        await locks.elect(name, candidate="c", ttl=1.0, wait=0)


@pytest.mark.parametrize(
    ("ttl", "cls", "message"),
    [*BAD_TTLS, (None, InvalidArgument, _TTL_TYPE.format("NoneType"))],
    ids=[*_ids(BAD_TTLS), "None"],
)
async def test_locks_bad_ttls(
    locks: microstd.sync.Locks, ttl: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await locks.acquire(_name(), ttl=ttl)
    with _raises(cls, message):
        await locks.elect(_name(), candidate="c", ttl=ttl, wait=0)
    lease = await locks.acquire(_name(), ttl=5.0)
    try:
        if ttl is not None:  # refresh(None) keeps the current ttl
            with _raises(cls, message):
                await lease.refresh(ttl)
    finally:
        await lease.release()


@pytest.mark.parametrize(("wait", "cls", "message"), BAD_WAITS, ids=_ids(BAD_WAITS))
async def test_locks_bad_waits(
    locks: microstd.sync.Locks, wait: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await locks.acquire(_name(), ttl=1.0, wait=wait)


@pytest.mark.parametrize(("name", "cls", "message"), BAD_LOCK_NAMES, ids=_ids(BAD_LOCK_NAMES))
def test_locks_bad_names_blocking(
    sync_locks: microstd.sync.SyncLocks, name: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        sync_locks.acquire(name, ttl=1.0)
    with _raises(cls, message), sync_locks.lock(name, ttl=1.0):
        pass


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=_ids(BAD_TTLS))
def test_locks_bad_ttls_blocking(
    sync_locks: microstd.sync.SyncLocks, ttl: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        sync_locks.acquire(_name(), ttl=ttl)
    with _raises(cls, message), sync_locks.lock(_name(), ttl=ttl):
        pass
    with sync_locks.lock(_name(), ttl=5.0) as lease, _raises(cls, message):
        lease.refresh(ttl)


@pytest.mark.parametrize(("wait", "cls", "message"), BAD_WAITS, ids=_ids(BAD_WAITS))
def test_locks_bad_waits_blocking(
    sync_locks: microstd.sync.SyncLocks, wait: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        sync_locks.acquire(_name(), ttl=1.0, wait=wait)
    with _raises(cls, message), sync_locks.lock(_name(), ttl=1.0, wait=wait):
        pass


# ---- registry ------------------------------------------------------------------


def _service(name: str = "greeter") -> Service:
    return Service(name, "1.0", [Node("n1", "127.0.0.1:9000")])


@pytest.mark.parametrize(("name", "cls", "message"), BAD_SERVICE_NAMES, ids=_ids(BAD_SERVICE_NAMES))
async def test_registry_bad_service_names(
    registry: microstd.registry.Registry, name: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await registry.register(_service(name), ttl=5.0)
    with _raises(cls, message):
        await registry.lookup(name)


@pytest.mark.parametrize(("ttl", "cls", "message"), BAD_TTLS, ids=_ids(BAD_TTLS))
async def test_registry_bad_ttls(
    registry: microstd.registry.Registry, ttl: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await registry.register(_service(), ttl=ttl)


# ---- broker --------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "cls", "message"), BAD_TOPICS, ids=_ids(BAD_TOPICS))
async def test_broker_bad_topics(
    broker: microstd.broker.Broker, topic: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await broker.publish(topic, b"x")


@pytest.mark.parametrize(("pattern", "cls", "message"), BAD_PATTERNS, ids=_ids(BAD_PATTERNS))
async def test_broker_bad_patterns(
    broker: microstd.broker.Broker, pattern: Any, cls: type[Exception], message: str
) -> None:
    with _raises(cls, message):
        await broker.subscribe(pattern, lambda m: None)


# ---- memory:// options, the same in every area ---------------------------------

_OPENERS = {
    "store": microstd.store.open,
    "store-sync": microstd.store.open_sync,
    "broker": microstd.broker.open,
    "broker-sync": microstd.broker.open_sync,
    "sync": microstd.sync.open,
    "sync-sync": microstd.sync.open_sync,
    "registry": microstd.registry.open,
}
_IMPL_AREAS = [area for area in _OPENERS if not area.startswith("registry")]


@pytest.mark.parametrize("area", _IMPL_AREAS)
@pytest.mark.parametrize("how", ["query", "keyword"])
def test_memory_bad_impl(area: str, how: str) -> None:
    url, options = (
        ("memory://?impl=java", {}) if how == "query" else ("memory://", {"impl": "java"})
    )
    with _raises(InvalidArgument, "impl must be 'rust' or 'python', got 'java'"):
        _OPENERS[area](url, **options)


@pytest.mark.parametrize("area", _IMPL_AREAS)
def test_memory_impl_rust_without_the_extension_is_an_error(
    area: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_accel, "AVAILABLE", False)
    with pytest.raises(NotSupported, match="impl='rust' needs microstd's Rust core"):
        _OPENERS[area]("memory://?impl=rust")
    # Without impl=, the pure twin is the default, as on an install without the core.
    opened = _OPENERS[area]("memory://")
    assert "Python" in repr(opened) or "python" in repr(opened)


@pytest.mark.parametrize("area", list(_OPENERS))
@pytest.mark.parametrize("how", ["query", "keyword"])
def test_memory_unknown_option(area: str, how: str) -> None:
    url, options = ("memory://?colour=red", {}) if how == "query" else ("memory://", {"colour": 1})
    with pytest.raises(InvalidArgument, match=r"^unknown memory:// \w+ option\(s\): colour; known"):
        _OPENERS[area](url, **options)


def test_memory_unknown_option_suggests_the_close_one() -> None:
    with pytest.raises(InvalidArgument, match="Did you mean 'max_entries'"):
        microstd.store.open("memory://?max_entrys=3")


# ---- the Rust cores quote keys and numbers as their twins do ---------------------

#: Keys whose quoting differs between Rust's `{:?}` and Python's repr().
TRICKY = [
    "a",
    "it's",
    'say "hi"',
    "both ' and \"",
    "tab\there",
    "back\\slash",
    "zw\u200bsp",
    "é中",
    "\x7f",
    "\U000e0001",
]

needs_core = pytest.mark.skipif(not _accel.AVAILABLE, reason="compares the Rust core with its twin")


def _message(call: Any, *args: Any, **kwargs: Any) -> str:
    try:
        call(*args, **kwargs)
    except MicrostdError as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("no error raised")


def _store_messages(impl: str, key: str) -> list[str]:
    store = microstd.store.open_sync("memory://", impl=impl)
    rev = store.write(key, 1)
    store.write(key, 2)
    return [
        _message(store.read, key + "-missing"),
        _message(store.write, key, 3, if_absent=True),
        _message(store.write, key, 3, if_revision=rev),
        _message(store.write, key + "-gone", 3, if_revision=rev),
    ]


@needs_core
@pytest.mark.parametrize("key", TRICKY)
def test_store_messages_match_the_twin(key: str) -> None:
    rust, python = _store_messages("rust", key), _store_messages("python", key)
    assert rust == python
    assert python[0] == f"NotFound: no record for key {key + '-missing'!r}"


def _lock_messages(impl: str, name: str) -> list[str]:
    with microstd.sync.open_sync("memory://", impl=impl) as locks:
        lease = locks.acquire(name, ttl=5.0)
        held = _message(locks.acquire, name, ttl=1.0, wait=0)
        waited = _message(locks.acquire, name, ttl=1.0, wait=0.05)
        lease.release()
        return [held, waited, _message(lease.release)]


@needs_core
@pytest.mark.parametrize("name", TRICKY)
def test_lock_messages_match_the_twin(name: str) -> None:
    rust, python = _lock_messages("rust", name), _lock_messages("python", name)
    assert rust == python
    assert python[:2] == [
        f"LockTimeout: lock {name!r} is held",
        f"LockTimeout: lock {name!r} not acquired within 0.05s",
    ]


def _topic_messages(impl: str, name: str) -> list[str]:
    with microstd.broker.open_sync("memory://", impl=impl) as broker:
        return [
            _message(broker.publish, f"{name}..x", b""),
            _message(broker.publish, f"{name} x", b""),
            _message(broker.subscribe, f"{name}.>.x", print),
        ]


@needs_core
@pytest.mark.parametrize("name", TRICKY)
def test_topic_messages_match_the_twin(name: str) -> None:
    assert _topic_messages("rust", name) == _topic_messages("python", name)
