"""The Rust codecs' fast paths: borrowed container items, exact-width strs, direct codecs.

The encoders read plain items of dicts and lists without taking references;
a `default=` hook that mutates the container under them must end in an
EncodeError, never a crash. The decoders build strs at their final width;
a str of the wrong width would compare unequal to the original.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import ClassVar

import pytest

from microstd import _core, codec
from microstd.codec import Codec
from microstd.errors import DecodeError, EncodeError

ENCODERS = {"msgpack": _core.msgpack_dumps, "cbor": _core.cbor_dumps}
DECODERS = {
    "msgpack": (_core.msgpack_dumps, _core.msgpack_loads),
    "cbor": (_core.cbor_dumps, _core.cbor_loads),
}


class Unknown:
    """Outside the type model: handed to the `default=` hook."""


@pytest.fixture(params=sorted(ENCODERS))
def dumps(request: pytest.FixtureRequest) -> Callable[..., bytes]:
    return ENCODERS[request.param]


def test_a_hook_emptying_the_dict_being_encoded_is_an_error(
    dumps: Callable[..., bytes],
) -> None:
    doc: dict[str, object] = {"a": Unknown(), "b": "x" * 100, "c": 12345678901}

    def hook(obj: object) -> object:
        doc.clear()
        return 1

    with pytest.raises(EncodeError, match="changed size"):
        dumps(doc, default=hook)


def test_a_hook_emptying_the_list_being_encoded_is_an_error(
    dumps: Callable[..., bytes],
) -> None:
    items: list[object] = [Unknown(), "y" * 100, 2.5, None]

    def hook(obj: object) -> object:
        items.clear()
        return 1

    with pytest.raises(EncodeError, match="changed size"):
        dumps(items, default=hook)


def test_a_hook_that_replaces_later_items_encodes_the_new_ones(dumps: Callable[..., bytes]) -> None:
    items: list[object] = [Unknown(), "old " * 30]
    doc: dict[str, object] = {"k": Unknown(), "v": "old " * 30}

    def hook(obj: object) -> object:
        items[1] = "new"
        doc["v"] = "new"
        return 0

    assert dumps(items, default=hook) == dumps([0, "new"])
    assert dumps(doc, default=hook) == dumps({"k": 0, "v": "new"})


def test_an_error_after_a_hook_names_the_key_it_happened_at(dumps: Callable[..., bytes]) -> None:
    doc: dict[str, object] = {"first": Unknown()}

    def hook(obj: object) -> object:
        doc.clear()  # the key "first" now lives only in the encoder
        return "\ud800"  # and this cannot be encoded

    with pytest.raises(EncodeError, match="surrogate") as caught:
        dumps(doc, default=hook)
    assert caught.value.path == "$.first"


TEXTS = [
    "",
    "plain ascii",
    "café naïve ÿ",  # Latin-1: one byte per character
    "Straße 東京 Привет",  # two bytes per character
    "😀 ok \U0010ffff",  # four bytes per character
    "x" * 40 + "é" * 40 + "東" * 40,
]


@pytest.mark.parametrize("fmt", sorted(DECODERS))
@pytest.mark.parametrize("text", TEXTS)
def test_decoded_strs_equal_the_original_at_every_width(fmt: str, text: str) -> None:
    dumps, loads = DECODERS[fmt]
    doc = {text: [text, {"k": text}]}
    decoded = loads(dumps(doc))
    assert decoded == doc
    assert [len(k) for k in decoded] == [len(text)]


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"\xa4ab\xc3(", 3),  # msgpack fixstr, bad continuation byte
        (b"\xa3\xed\xa0\x80", 1),  # a surrogate
        (b"\x81\xa2k\xff\x01", 3),  # a bad map key
    ],
)
def test_invalid_utf8_in_msgpack_names_the_first_bad_byte(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as caught:
        _core.msgpack_loads(data)
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"\x64ab\xc3(", 3),  # CBOR text, bad continuation byte
        (b"\xa1\x62k\xff\x01", 3),  # a bad map key
        (b"\xa1\x78\x02k\xff\x01", 4),  # a bad map key with a one-byte length
    ],
)
def test_invalid_utf8_in_cbor_names_the_first_bad_byte(data: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as caught:
        _core.cbor_loads(data)
    assert caught.value.offset == offset


def test_big_and_small_ints_keep_their_value(dumps: Callable[..., bytes]) -> None:
    loads = _core.msgpack_loads if dumps is _core.msgpack_dumps else _core.cbor_loads
    values = [0, 1, -1, 2**30 - 1, 2**30, -(2**30), 2**31, 2**62, -(2**63), 2**64 - 1, True, False]
    assert loads(dumps(values)) == values


def test_registry_codecs_call_the_core_with_no_wrapper() -> None:
    for content_type, fn in [
        ("application/msgpack", _core.msgpack_dumps),
        ("application/cbor", _core.cbor_dumps),
    ]:
        c = codec.get(content_type)
        assert c.dumps is fn
        assert c.dumps({"a": [1]}) == fn({"a": [1]})


def test_a_codec_subclass_keeps_its_own_dumps_and_loads() -> None:
    class Shouting(Codec):
        def dumps(self, obj: object) -> bytes:
            return super().dumps(obj).upper()

        def loads(self, data: bytes) -> object:
            return super().loads(data.lower())

    c = Shouting("text/x-shout", lambda obj: str(obj).encode(), lambda b: bytes(b).decode())
    assert c.dumps("hi") == b"HI"
    assert c.loads(b"HI") == "hi"
    plain = Codec("text/x-plain", lambda obj: str(obj).encode(), lambda b: bytes(b).decode())
    assert plain.dumps("hi") == b"hi"
    assert plain == Codec("text/x-plain", plain.encode, plain.decode)


def test_the_public_functions_are_the_cores_own() -> None:
    # No Python frame between a caller and the core (a wrapper taking the
    # keywords cost a third of a small message's decode).
    assert codec.msgpack.dumps is _core.msgpack_dumps
    assert codec.msgpack.loads is _core.msgpack_loads
    assert codec.cbor.dumps is _core.cbor_dumps
    assert codec.cbor.loads is _core.cbor_loads
    assert codec.json.dumps is _core.json_dumps
    assert codec.json.loads is _core.json_loads


KEYWORDS: list[dict[str, object]] = [
    {"max_depth": -1},
    {"max_str_len": "3"},
    {"max_container_len": 1.0},
    {"max_container_len": 2**80},
    {"max_depth": True},
    {"max_depth": 0},
    {"type": dict[str, int]},
    {"type": dict[str, int], "max_depth": 3, "forbid_unknown_fields": True},
    {"type": list[int]},
    {"type": int, "max_container_len": 0},
    {"type": object()},
    {"type": None, "strict_keys": True, "unique_keys": True},
]


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
@pytest.mark.parametrize("keywords", KEYWORDS, ids=[str(sorted(k)) for k in KEYWORDS])
def test_the_cores_loads_takes_the_keywords_as_the_twin_does(
    fmt: str, keywords: dict[str, object]
) -> None:
    from microstd.codec import cbor, msgpack

    module = msgpack if fmt == "msgpack" else cbor
    twin = module._py_loads
    data = module.dumps({"x": 1})

    def outcome(loads: Callable[..., object]) -> object:
        try:
            return ("ok", loads(data, **keywords))
        except (TypeError, ValueError) as err:
            return (type(err), str(err))

    assert outcome(module.loads) == outcome(twin)


class _Key(str):
    pass


JSON_VALUES: list[object] = [
    {"a": [1, 2.5, None, True]},
    {_Key("k"): 1},
    {1: 2, "a": 3},
    {None: 1, True: 2, 1.5: 3},
    {(1, 2): 3},
    {"x": 2**70},
    {"s": {1, 2}},
    {"x": object()},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
@pytest.mark.parametrize("sort_keys", [False, True])
def test_the_cores_json_dumps_answers_as_the_python_function(
    value: object, sort_keys: bool
) -> None:
    # The core tries orjson without its non-str-keys option first; a dict
    # that needs it, and every error, take the Python function's full path.
    def outcome(dumps: Callable[..., bytes]) -> object:
        try:
            return dumps(value, sort_keys=sort_keys)
        except EncodeError as err:
            return (err.message, err.path)

    assert outcome(codec.json.dumps) == outcome(codec.json._py_dumps)


@pytest.mark.parametrize(
    "data",
    [b'{"a":1}', '{"a":[1]}', bytearray(b"[1]"), memoryview(b"[2]"), b'{"a":', b"1e400", 3],
)
def test_the_cores_json_loads_answers_as_the_python_function(data: object) -> None:
    def outcome(loads: Callable[..., object]) -> object:
        try:
            return loads(data)
        except DecodeError as err:
            return (err.message, err.offset)

    assert outcome(codec.json.loads) == outcome(codec.json._py_loads)


def test_dataclass_fields_are_remembered_per_class() -> None:
    # The core remembers each dataclass's field names after its first encode;
    # a subclass (more fields) and a ClassVar (no field) must not be confused.
    @dataclasses.dataclass
    class Base:
        a: int
        kind: ClassVar[str] = "base"

    @dataclasses.dataclass
    class Child(Base):
        b: str = "x"

    for fmt in ("msgpack", "cbor", "json"):
        module = getattr(codec, fmt)
        for _ in range(2):
            assert module.loads(module.dumps(Base(1))) == {"a": 1}
            assert module.loads(module.dumps(Child(2))) == {"a": 2, "b": "x"}
            assert module.loads(module.dumps([Child(3), Base(4)])) == [
                {"a": 3, "b": "x"},
                {"a": 4},
            ]


@pytest.mark.parametrize("depth", [1, 254, 255, 256, 257])
def test_rows_of_floats_keep_the_depth_limit(depth: int) -> None:
    # Short lists of floats are written in one go; they encode, and count
    # against the nesting limit, as the same rows as tuples do (tuples are
    # encoded item by item).
    def nested(row: Callable[[list[float]], object]) -> object:
        value = row([1.5, -0.0, float("inf")])
        for _ in range(depth - 1):
            value = [value, row([2.5])]
        return value

    def outcome(value: object) -> object:
        try:
            return codec.msgpack.dumps(value)
        except EncodeError as err:
            return (err.message, err.path)

    assert outcome(nested(list)) == outcome(nested(tuple))


def test_the_plain_dumps_and_the_full_dumps_agree() -> None:
    value = {"b": [1, 2.5, "x", None, True], "a": {"c": 1}}
    for fmt in ("msgpack", "cbor", "json"):
        dumps = getattr(_core, f"{fmt}_dumps")
        assert dumps(value) == dumps(obj=value) == dumps(value, default=None)
        with pytest.raises(EncodeError) as plain:
            dumps({"a": [Unknown()]})
        with pytest.raises(EncodeError) as full:
            dumps({"a": [Unknown()]}, default=None)
        assert (plain.value.message, plain.value.path) == (full.value.message, full.value.path)
        with pytest.raises(TypeError, match="missing 1 required"):
            dumps()


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_the_plain_call_and_the_full_call_agree(fmt: str) -> None:
    # `loads(data)` with bytes and nothing else skips the keyword parsing;
    # every other call goes through it. Same values, same errors.
    import inspect

    loads = getattr(_core, f"{fmt}_loads")
    dumps = getattr(_core, f"{fmt}_dumps")
    assert loads.__name__ == f"{fmt}_loads"
    assert list(inspect.signature(loads).parameters)[:2] == ["data", "type"]
    assert "Decode one" in (loads.__doc__ or "")
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": b"\x00"}}
    data = dumps(value)
    for call in (
        lambda d: loads(d),
        lambda d: loads(data=d),
        lambda d: loads(bytearray(d)),
        lambda d: loads(d, max_depth=10),
    ):
        assert call(data) == value
        with pytest.raises(DecodeError) as plain:
            loads(data[:-1])
        with pytest.raises(DecodeError) as full:
            call(data[:-1])
        assert (plain.value.message, plain.value.offset) == (full.value.message, full.value.offset)
    with pytest.raises(TypeError, match="missing 1 required"):
        loads()
    with pytest.raises(TypeError, match="positional"):
        loads(data, data)
    with pytest.raises(TypeError):
        loads("text")


# --- the plain entry under hostile calls (review) ---

_FORMATS = ("msgpack", "cbor", "json")


@pytest.mark.parametrize("fmt", _FORMATS)
def test_the_plain_entry_refuses_wrong_calls_as_the_full_function(fmt: str) -> None:
    mod = getattr(codec, fmt)
    data = mod.dumps({"a": 1})
    for call in (
        lambda: mod.loads(),
        lambda: mod.loads(data, data),
        lambda: mod.dumps(),
        lambda: mod.dumps(1, 2),
        lambda: mod.loads(data, nope=1),
    ):
        with pytest.raises(TypeError):
            call()
    # keywords with no positional argument go to the full function
    assert mod.loads(data=data) == {"a": 1}
    assert mod.dumps(obj={"a": 1}) == data
    assert mod.loads(memoryview(data)) == {"a": 1}
    assert mod.loads(bytearray(data)) == {"a": 1}

    class Sub(bytes):
        pass

    if fmt != "json":  # orjson refuses a bytes subclass (as before the plain entry)
        assert mod.loads(Sub(data)) == {"a": 1}


@pytest.mark.parametrize("fmt", _FORMATS)
def test_the_plain_entry_keeps_its_arguments_reference_counts(fmt: str) -> None:
    import sys

    mod = getattr(codec, fmt)
    obj = {"a": [1, 2.5, "x"]}
    data = mod.dumps(obj)
    bad = b"\xff\xff" if fmt == "json" else b"\xc1"
    unsupported = object()
    before = [sys.getrefcount(x) for x in (obj, data, bad, unsupported)]
    for _ in range(1000):
        mod.dumps(obj)
        mod.loads(data)
        with pytest.raises(DecodeError):
            mod.loads(bad)
        with pytest.raises((EncodeError, TypeError)):
            mod.dumps(unsupported)
    assert [sys.getrefcount(x) for x in (obj, data, bad, unsupported)] == before


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_a_loop_of_plain_calls_holds_no_growing_garbage(fmt: str) -> None:
    # Strs evicted from the key cache and PyErrs dropped inside a plain call
    # were queued by PyO3 (the plain path is not its trampoline) and freed
    # only at the next PyO3 call: 200,000 unique-key loads held 11 MB.
    import gc
    import sys
    import tracemalloc

    mod = getattr(codec, fmt)
    blobs = [mod.dumps({f"key{i}": i}) for i in range(60_000)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for blob in blobs:
            mod.loads(blob)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000
    # an int too big for 64 bits: the encoder drops an OverflowError inside
    # (msgpack then refuses it, CBOR writes a bignum)
    before = sys.getrefcount(OverflowError)
    for _ in range(3000):
        with contextlib.suppress(EncodeError):
            mod.dumps(1 << 200)
    assert sys.getrefcount(OverflowError) - before < 1000


@pytest.mark.parametrize("fmt", _FORMATS)
def test_a_default_hook_may_call_the_plain_entry_again(fmt: str) -> None:
    mod = getattr(codec, fmt)

    class Thing:
        pass

    def hook(value: object) -> object:
        if isinstance(value, Thing):
            inner = mod.dumps({"inner": 1})
            return mod.loads(inner)
        raise TypeError("no")

    assert mod.loads(mod.dumps([Thing(), Thing()], default=hook)) == [{"inner": 1}] * 2

    def failing(value: object) -> object:
        mod.loads(b"\xff\xff" if fmt == "json" else b"\xc1")
        return None

    with pytest.raises((DecodeError, EncodeError)):
        mod.dumps(Thing(), default=failing)


def test_the_plain_entry_from_many_threads() -> None:
    import threading

    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3000):
                obj = {f"t{n}k{i % 2000}": [i, str(i)]}
                for fmt in _FORMATS:
                    mod = getattr(codec, fmt)
                    assert mod.loads(mod.dumps(obj)) == obj
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
