"""Argument rules this project adds beyond the contract's tables.

The bad-value tables themselves (microstd.testing.tables) run in every area's
suite on every backend. Here: the `memory://` options parser of each area, and
the Rust cores quoting keys and numbers exactly as their pure twins do.
"""

from __future__ import annotations

from typing import Any

import pytest

import microstd.broker
import microstd.registry
import microstd.store
import microstd.sync
from microstd import _accel
from microstd.errors import InvalidArgument, MicrostdError, NotSupported
from microstd.testing.tables import raises as _raises

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
