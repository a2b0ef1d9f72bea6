"""`send`, the one-call publish of both routing cores, and the messages it builds.

The Rust core builds a `RustMessage` natively; the twin a `Message`. Handlers
must not be able to tell them apart: same fields, `isinstance(m, Message)`,
equality across the two, the same repr, decode and errors.
"""

from __future__ import annotations

import copy
import gc
import weakref
from typing import Any

import pytest

from microstd import _accel, codec
from microstd.broker import Message
from microstd.broker.memory import new_core
from microstd.errors import EncodeError, InvalidTopic

BODIES: list[tuple[object, dict[str, str] | None, str | None]] = [
    (b"raw", None, None),
    (b"", {}, None),
    ({"id": 1, "items": [1, 2]}, {"trace": "abc", "a": "b"}, None),
    ({"j": True}, None, "application/json"),
    (b"text", None, "text/plain"),
    (bytearray(b"ba"), None, None),
    (memoryview(b"mv"), {"k": "v"}, None),
    ("a str", None, "application/cbor"),
]


def cores() -> list[Any]:
    return [new_core("python"), new_core("rust")] if _accel.AVAILABLE else [new_core("python")]


def delivered(core: Any) -> list[Any]:
    got: list[Any] = []
    core.subscribe("t.*", None, got.append, "owner")
    for body, headers, content_type in BODIES:
        assert core.send("t.x", body, headers, content_type) == ()  # nothing over its bound
    return got


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_send_builds_messages_handlers_cannot_tell_apart(core: Any) -> None:
    got = delivered(core)
    expected = [
        ("t.x", b"raw", {}, "application/octet-stream", b"raw"),
        ("t.x", b"", {}, "application/octet-stream", b""),
        (
            "t.x",
            codec.msgpack.dumps({"id": 1, "items": [1, 2]}),
            {"trace": "abc", "a": "b"},
            "application/msgpack",
            {"id": 1, "items": [1, 2]},
        ),
        ("t.x", b'{"j":true}', {}, "application/json", {"j": True}),
        ("t.x", b"text", {}, "text/plain", "text"),
        ("t.x", b"ba", {}, "application/octet-stream", b"ba"),
        ("t.x", b"mv", {"k": "v"}, "application/octet-stream", b"mv"),
    ]
    for m, (topic, data, headers, content_type, decoded) in zip(got, expected, strict=False):
        assert isinstance(m, Message)
        assert (m.topic, m.data, m.headers, m.content_type) == (topic, data, headers, content_type)
        assert type(m.data) is bytes
        assert m.decode() == decoded
    assert got[-1].decode() == "a str"
    assert repr(got[2]) == (
        "Message(topic='t.x', content_type='application/msgpack', size=14, headers=['a', 'trace'])"
    )
    with pytest.raises(TypeError):
        hash(got[0])
    shallow, deep = copy.copy(got[2]), copy.deepcopy(got[2])
    assert type(shallow) is type(deep) is type(got[2])
    assert shallow == deep == got[2]
    assert shallow.headers is got[2].headers
    assert deep.headers is not got[2].headers


@pytest.mark.skipif(_accel.core is None, reason="needs the Rust core to compare against")
def test_rust_and_twin_messages_are_equal_field_by_field() -> None:
    assert _accel.core is not None
    twin, rust = delivered(new_core("python")), delivered(new_core("rust"))
    assert [type(m) for m in twin] == [Message] * len(BODIES)
    assert [type(m) for m in rust] == [_accel.core.RustMessage] * len(BODIES)
    for a, b in zip(twin, rust, strict=True):
        assert a == b
        assert b == a
        assert (a != b) is False
        assert (b != a) is False
        assert repr(a) == repr(b)
    assert rust[0] != Message("t.x", b"other")
    assert rust[0] != "not a message"
    assert _accel.core.RustMessage("a", b"x") == Message("a", b"x")


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_send_refuses_bad_bodies_and_topics_before_delivering(core: Any) -> None:
    got: list[object] = []
    core.subscribe(">", None, got.append, "owner")
    with pytest.raises(EncodeError):
        core.send("a", {"bad": object()})
    with pytest.raises(TypeError):
        core.send("a", b"x", {"k": 1})
    for bad in ["a.*", "a..b", "", "a b", "a\x1cb", 42, ["a"]]:
        with pytest.raises(InvalidTopic):
            core.send(bad, b"x")
        with pytest.raises(InvalidTopic):
            core.publish(bad, "m")
    assert got == []


class _Marker:
    pass


@pytest.mark.parametrize("core", cores(), ids=lambda c: type(c).__name__)
def test_a_message_kept_in_its_own_headers_is_still_freed(core: Any) -> None:
    got: list[Any] = []
    core.subscribe("a", None, got.append, "owner")
    core.send("a", b"x")
    message = got.pop()
    marker = _Marker()
    message.headers["self"] = message
    message.headers["marker"] = marker
    alive = weakref.ref(marker)
    del message, marker
    gc.collect()
    assert alive() is None
