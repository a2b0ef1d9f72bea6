"""Per-call limits of `codec.json.loads`, Rust core and twin: the same errors
(message and byte offset) from both, and msgpack's messages for the same value."""

from __future__ import annotations

import json as stdjson
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from microstd import _core, codec
from microstd.codec import json as cjson
from microstd.errors import DecodeError

Loads = Callable[..., object]
IMPLS: dict[str, Loads] = {"rust": _core.json_loads, "python": cjson._py_loads}


def outcome(loads: Loads, data: object, **limits: Any) -> object:
    try:
        return ("ok", loads(data, **limits))
    except DecodeError as err:
        return ("error", err.message, err.offset)
    except (TypeError, ValueError) as err:
        return (type(err), str(err))


def both(data: object, **limits: Any) -> object:
    """The one outcome of the core and the twin (asserting they agree)."""
    rust, python = (outcome(loads, data, **limits) for loads in IMPLS.values())
    assert rust == python, (data, limits)
    return rust


def msgpack_message(value: object, **limits: Any) -> str | None:
    try:
        codec.msgpack.loads(codec.msgpack.dumps(value), **limits)
    except DecodeError as err:
        return err.message
    return None


# (keyword, the limit, a value right at it, the same one past it, offset of the refused item)
BOUNDARIES: list[tuple[str, int, object, object, int]] = [
    ("max_container_len", 3, [[1, 2, 3]], [[1, 2, 3, 4]], 1),
    ("max_container_len", 2, [{"a": 1, "b": [1]}], [{"a": 1, "b": [], "c": 3}], 1),
    ("max_container_len", 0, [], [0], 0),
    ("max_str_len", 3, ["abc"], ["x", "abcd"], 5),
    ("max_str_len", 3, {"abc": "é"}, {"é": 1, "abcd": 1}, 8),
    ("max_str_len", 4, ["é€"[:1] * 2], ["€é"], 1),  # UTF-8 bytes, not characters
    ("max_str_len", 4, ["\U0001f600"], ["\U0001f600a"], 1),
    ("max_depth", 2, [[1], {"a": 2}], [[1], {"a": [2]}], 10),
    ("max_depth", 1, [1, "x"], [1, []], 3),
    ("max_depth", 0, 7, [], 0),
]


@pytest.mark.parametrize(("key", "limit", "ok", "bad", "offset"), BOUNDARIES)
def test_each_limit_at_its_boundary(
    key: str, limit: int, ok: object, bad: object, offset: int
) -> None:
    assert both(orjson.dumps(ok), **{key: limit}) == ("ok", ok)
    refused = both(orjson.dumps(bad), **{key: limit})
    assert refused == ("error", msgpack_message(bad, **{key: limit}), offset)


def test_messages_name_the_limit() -> None:
    assert both(b"[1,2,3]", max_container_len=2) == (
        "error",
        "array of 3 items is longer than max_container_len (2)",
        0,
    )
    assert both(b' {"a":1, "b":2, "c":3}', max_container_len=2) == (
        "error",
        "map of 3 items is longer than max_container_len (2)",
        1,
    )
    assert both(b'["\\u20ac"]', max_str_len=2) == (
        "error",
        "str of 3 bytes is longer than max_str_len (2)",
        1,
    )
    assert both(b"[[[1]]]", max_depth=2) == ("error", "nesting deeper than 2 levels", 2)


def test_escapes_count_what_they_decode_to() -> None:
    text = b'["\\n\\"\\\\\\u0041", "\\ud83d\\ude00", "\\u00e9\\u0800"]'
    assert both(text, max_str_len=5) == ("ok", ['\n"\\A', "\U0001f600", "é\u0800"])
    assert both(text, max_str_len=4)[0:2] == (
        "error",
        "str of 5 bytes is longer than max_str_len (4)",
    )


def test_the_first_item_in_the_text_is_refused() -> None:
    # The outer array's count is known only at its close, yet it starts first (as
    # msgpack reads its header first); at one offset depth wins over the count.
    assert both(b'[["abcdef"], 1, 2]', max_container_len=2, max_str_len=3)[2] == 0
    assert both(b"[[1,2,3]]", max_container_len=1, max_depth=1) == (
        "error",
        "nesting deeper than 1 levels",
        1,
    )


def test_offsets_are_bytes_for_str_input() -> None:
    assert both('["é", [1, 2]]', max_container_len=1)[2] == 0
    assert both('["é", [1, 2]]', max_container_len=2) == ("ok", ["é", [1, 2]])
    assert both('["é", "abc"]', max_str_len=2) == (
        "error",
        "str of 3 bytes is longer than max_str_len (2)",
        7,
    )


def test_max_depth_is_not_capped_at_msgpacks_256() -> None:
    # JSON's own bound is orjson's (1024 levels); a larger max_depth takes the text as is.
    deep = b"[" * 300 + b"]" * 300
    assert both(deep, max_depth=300)[0] == "ok"
    assert both(deep, max_depth=299) == ("error", "nesting deeper than 299 levels", 299)
    assert both(deep, max_depth=2**80)[0] == "ok"


@pytest.mark.parametrize(
    "keywords",
    [
        {"max_depth": -1},
        {"max_str_len": "3"},
        {"max_container_len": 1.0},
        {"max_container_len": None, "max_depth": 2.5},
        {"max_container_len": 2**80},
        {"max_depth": True},
        {"max_depth": 0, "type": object()},
        {"max_str_len": -5, "type": object()},
    ],
    ids=str,
)
def test_bad_limits_are_refused_as_msgpack_refuses_them(keywords: dict[str, Any]) -> None:
    data = {"x": 1}
    expected = outcome(codec.msgpack.loads, codec.msgpack.dumps(data), **keywords)
    got = both(orjson.dumps(data), **keywords)
    if expected[0] == "error":
        assert got[0] == "error"
    else:
        assert got == expected


def test_other_inputs_take_the_limits() -> None:
    text = b"[1, [2, 3]]"

    class Bytes(bytes):
        pass

    class Text(str):
        pass

    for data in (bytearray(text), memoryview(text), Bytes(text), Text(text.decode())):
        assert both(data, max_container_len=2) == ("ok", [1, [2, 3]])
        assert both(data, max_container_len=1) == (
            "error",
            "array of 2 items is longer than max_container_len (1)",
            0,
        )
    released = memoryview(text)
    released.release()
    assert both(released, max_depth=3)[0] is ValueError
    assert both(12, max_depth=3) == both(12)


def test_a_bytes_subclass_decodes_as_in_msgpack() -> None:
    class Bytes(bytes):
        def __bytes__(self) -> bytes:
            return b"[2]"

    class Text(str):
        def __str__(self) -> str:
            return "[2]"

    assert codec.msgpack.loads(Bytes(codec.msgpack.dumps([1]))) == [1]
    for data in (Bytes(b"[1]"), Text("[1]")):
        assert both(data) == ("ok", [1])
        assert codec.json.loads(data) == [1]
        assert codec.json.loads(data, type=list[int]) == [1]
        assert cjson._py_loads(data, type=list[int]) == [1]


def test_typed_loads_take_the_limits() -> None:
    for loads in IMPLS.values():
        assert loads(b"[1, 2]", type=list[int], max_container_len=2) == [1, 2]
        with pytest.raises(DecodeError, match="max_container_len"):
            loads(b"[1, 2, 3]", type=list[int], max_container_len=2)
        with pytest.raises(DecodeError, match="max_str_len"):
            loads(b'{"abcd": 1}', type=dict[str, int], max_str_len=3)
    assert both(b"[1]", type=list[int], max_depth=0) == (
        "error",
        "nesting deeper than 0 levels",
        0,
    )


def test_plain_loads_is_unchanged_without_limits() -> None:
    # orjson's own bound (1024 levels) stays the only one.
    deep = b"[" * 1000 + b"]" * 1000
    for loads in IMPLS.values():
        assert isinstance(loads(deep), list)
        with pytest.raises(DecodeError):
            loads(b"[" * 1025 + b"]" * 1025)
    assert both(b"[1, 2, 3]", max_container_len=None, max_str_len=None, max_depth=None) == (
        "ok",
        [1, 2, 3],
    )


def test_core_twin_and_msgpack_agree_under_random_limits() -> None:
    rng = random.Random(13)

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 4 or roll < 0.4:
            return rng.choice([1, -7, 2.5, "ab", "long text", "é€\U0001f600", "a\nb", None, True])
        if roll < 0.7:
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        return {
            rng.choice(["k", "key", "ké", "\t"]): value(depth + 1) for _ in range(rng.randrange(4))
        }

    for _ in range(1500):
        v = value(0)
        text = orjson.dumps(v, option=orjson.OPT_INDENT_2 if rng.random() < 0.5 else 0)
        if rng.random() < 0.2:
            text = stdjson.dumps(v, ensure_ascii=True).encode()  # \u escapes, pairs too
        limits = {
            k: rng.choice(choices)
            for k, choices in (
                ("max_container_len", [None, 0, 1, 3]),
                ("max_str_len", [None, 0, 2, 5]),
                ("max_depth", [None, 1, 2, 3]),
            )
        }
        got = both(text, **limits)
        if got[0] == "ok":
            assert got == ("ok", v)
            assert msgpack_message(v, **limits) is None
        else:
            assert got[1] == msgpack_message(v, **limits), (text, limits)


@pytest.mark.parametrize("pure", [False, True], ids=["rust", "python"])
def test_streams_check_each_document(pure: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from microstd import _accel

    if pure:
        monkeypatch.setattr(_accel, "core", None)
    lines = b'[1, 2]\n\n{"a": [1, 2, 3]}\n'
    it = codec.json.iter_loads(lines, max_container_len=2)
    assert next(it) == [1, 2]
    with pytest.raises(DecodeError) as err:
        next(it)
    assert (err.value.message, err.value.offset) == (
        "array of 3 items is longer than max_container_len (2)",
        14,  # in the buffer: the line's start plus the array's offset in it
    )
    decoder = codec.json.StreamDecoder(type=list[str], max_str_len=3)
    decoder.feed(b'["abc"]\n["abcd"]\n')
    assert next(decoder) == ["abc"]
    with pytest.raises(DecodeError, match="str of 4 bytes"):
        next(decoder)
    with pytest.raises(ValueError, match="max_depth must be a non-negative int or None"):
        codec.json.StreamDecoder(max_depth=-1)
    assert list(codec.json.iter_loads(b"[[1]]\n", max_depth=2)) == [[[1]]]


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_a_refused_decode_leaves_nothing_behind(name: str) -> None:
    import gc

    loads = IMPLS[name]
    data = b'{"key": [' + b'"abcd", ' * 50 + b'"abcdefgh"]}'
    sources = [data, bytearray(data), memoryview(data), data.decode()]
    gc.collect()
    objects = len(gc.get_objects())
    for _ in range(300):
        for source in sources:
            with pytest.raises(DecodeError):
                loads(source, max_str_len=4)
    gc.collect()
    assert len(gc.get_objects()) - objects < 50
    assert gc.isenabled()
    assert loads(data, max_str_len=8) == {"key": ["abcd"] * 50 + ["abcdefgh"]}
