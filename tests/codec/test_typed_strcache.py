"""Typed decoding reuses short str leaves from a cache (the core's value
cache, `rust/src/codec/values.rs`): results stay equal to the pure twin's
across repeated decodes, cache hits and evictions, at the size limit, for
non-ASCII and invalid text, from threads and from a decode re-entered inside
another; nothing leaks."""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any, Optional

import pytest
from _outcome import decode_outcome

from microstd import _accel, codec
from microstd.codec import typed
from microstd.codec._plan import plan_for

FORMATS = ["msgpack", "cbor", "json"]
# The core caches str leaves of at most this many UTF-8 bytes.
LIMIT = 32
needs_core = pytest.mark.skipif(_accel.core is None, reason="the Rust core is not built")


@dataclasses.dataclass
class Leaf:
    name: str
    lang: Optional[str]  # noqa: UP045 (the union path of the readers)
    tags: list[str]
    labels: dict[str, str]


def twin(fmt: str, tp: Any, data: bytes) -> object:
    """The pure twin's result for `data` (or the error it raises)."""
    untyped = codec.get(f"application/{fmt}", impl="python").loads
    return decode_outcome(
        lambda b: typed.run_plan(plan_for(tp), untyped(b), strings=fmt == "json", impl="python"),
        data,
    )


def canonical(fmt: str, tp: Any, data: bytes) -> object:
    """What the one-pass readers fall back to: the core's untyped decoder,
    then the twin's convert (the pure CBOR decoder words some errors apart)."""
    from microstd import _core

    untyped = {
        "msgpack": _core.msgpack_loads,
        "cbor": _core.cbor_loads,
        "json": codec.json._untyped_loads,
    }[fmt]
    return decode_outcome(
        lambda b: typed.run_plan(plan_for(tp), untyped(b), strings=fmt == "json", impl="python"),
        data,
    )


def leaf(name: str, lang: str | None = "en", tags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"name": name, "lang": lang, "tags": list(tags), "labels": {"k": name}}


def strs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strs(getattr(value, f.name))]
    if isinstance(value, list):
        return [s for item in value for s in strs(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strs(item)]
    return []


def assert_same_as_twin(fmt: str, tp: Any, value: object, times: int = 3) -> None:
    module = getattr(codec, fmt)
    data = module.dumps(value)
    expected = twin(fmt, tp, data)
    decoder = module.Decoder(tp)
    for _ in range(times):
        got = decode_outcome(decoder.decode, data)
        assert got == expected
        if got[0] == "ok":
            assert all(type(s) is str for s in strs(got[1]))


# Lengths in UTF-8 bytes around the limit; characters of 1, 2, 3 and 4 bytes.
AROUND_LIMIT = [
    ch * (n // len(ch.encode()))
    for ch in ("a", "é", "€", "😀")
    for n in (LIMIT - 4, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 4)
] + ["", "x", "a" * (LIMIT - 1) + "é"[:1], "ab" * 8, "ab" * 8 + "c"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_repeated_decodes_equal_the_twin(fmt: str) -> None:
    value = [leaf(s, tags=(s, "en", s)) for s in AROUND_LIMIT] * 3
    assert_same_as_twin(fmt, list[Leaf], value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_strings_differing_in_one_byte_are_not_confused(fmt: str) -> None:
    base = "abcdefghijklmnopqrstuvwxyz012345"[: LIMIT - 1]
    names = [base[:n] + c for n in range(len(base)) for c in "AB"] + [base]
    value = [leaf(s, lang=s[::-1]) for s in names]
    for _ in range(2):
        assert_same_as_twin(fmt, list[Leaf], value, times=2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_distinct_strings_evict_and_still_decode_right(fmt: str) -> None:
    value = [leaf(f"id-{i:08d}", lang=f"l{i % 50}", tags=(f"t{i}",)) for i in range(6000)]
    assert_same_as_twin(fmt, list[Leaf], value, times=2)
    # the first strings, long evicted, come back equal
    assert_same_as_twin(fmt, list[Leaf], value[:10], times=2)


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
@pytest.mark.parametrize("n", [LIMIT - 1, LIMIT, LIMIT + 1])
def test_invalid_utf8_is_refused_after_its_valid_neighbour_was_cached(fmt: str, n: int) -> None:
    module = getattr(codec, fmt)
    good = "a" * (n - 2) + "é"
    data = module.dumps(leaf(good))
    bad_text = ("a" * (n - 2)).encode() + b"\xc3\x28"
    surrogate = ("a" * (n - 3)).encode() + b"\xed\xa0\x80"
    for raw in (bad_text, surrogate):
        assert len(raw) == n
        bad = data.replace(good.encode(), raw)
        assert bad != data
        for _ in range(2):
            assert decode_outcome(module.Decoder(Leaf).decode, data) == twin(fmt, Leaf, data)
            got = decode_outcome(module.Decoder(Leaf).decode, bad)
            assert got[0] == twin(fmt, Leaf, bad)[0] == "decode"
            assert got == canonical(fmt, Leaf, bad)


@pytest.mark.parametrize(
    "text",
    [
        b'{"name":"\\ud800","lang":null,"tags":[],"labels":{}}',
        b'{"name":"\\ud83d\\ude00","lang":"\\u00e9","tags":["\\u20ac"],"labels":{"k":"x"}}',
        b'{"name":"ab\xff","lang":null,"tags":[],"labels":{}}',
        b'{"name":"\xed\xa0\x80","lang":null,"tags":[],"labels":{}}',
        b'{"name":"ab","lang":"ab","tags":["ab\xc3"],"labels":{}}',
    ],
)
def test_json_escapes_surrogates_and_invalid_bytes_match_the_twin(text: bytes) -> None:
    for _ in range(3):
        got = decode_outcome(codec.json.Decoder(Leaf).decode, text)
        assert got[0] == twin("json", Leaf, text)[0]
        assert got == canonical("json", Leaf, text)
        if got[0] == "ok":
            assert got == twin("json", Leaf, text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_decodes_from_threads_agree(fmt: str) -> None:
    module = getattr(codec, fmt)
    payloads = [
        module.dumps([leaf(f"n{t}-{i % 40}", tags=("x", f"t{t}")) for i in range(200)])
        for t in range(4)
    ]
    expected = [twin(fmt, list[Leaf], p) for p in payloads]
    decoder = module.Decoder(list[Leaf])
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for _ in range(150):
                assert ("ok", decoder.decode(payloads[t])) == expected[t]
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []


@dataclasses.dataclass
class Reentrant:
    name: str
    inner: bytes = b""

    def __post_init__(self) -> None:
        # a decode inside a decode: the outer one holds the cache
        if self.inner:
            object.__setattr__(self, "decoded", _INNER[0](self.inner))


_INNER: list[Any] = []


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_a_decode_inside_a_decode_runs_without_the_cache(fmt: str) -> None:
    module = getattr(codec, fmt)
    _INNER[:] = [module.Decoder(Leaf).decode]
    inner = module.dumps(leaf("inner", tags=("shared", "inner")))
    data = module.dumps([{"name": "shared", "inner": inner}, {"name": "inner"}] * 3)
    for _ in range(3):
        got = module.Decoder(list[Reentrant]).decode(data)
        assert [r.name for r in got] == ["shared", "inner"] * 3
        assert got[0].decoded == Leaf("inner", "en", ["shared", "inner"], {"k": "inner"})


@needs_core
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_cached_str_is_shared_and_its_count_does_not_grow(fmt: str) -> None:
    module = getattr(codec, fmt)
    data = module.dumps(leaf("en-GB", tags=("en-GB",)))
    decoder = module.Decoder(Leaf)
    decoder.decode(data)  # a str is cached the second time it is seen
    first = decoder.decode(data)
    second = decoder.decode(data)
    assert first.name is second.name is second.tags[0]  # hits
    held = first.name
    del first, second
    before = sys.getrefcount(held)
    for _ in range(2000):
        decoder.decode(data)
    assert sys.getrefcount(held) == before


@needs_core
@pytest.mark.parametrize("fmt", FORMATS)
def test_unique_strings_hold_no_growing_memory(fmt: str) -> None:
    import gc
    import tracemalloc

    module = getattr(codec, fmt)
    decoder = module.Decoder(Leaf)
    template = module.dumps(leaf("u00000000", lang="l00000000"))

    def unique(i: int) -> bytes:
        return template.replace(b"00000000", b"%08d" % i)

    for i in range(5000):  # fills the caches
        decoder.decode(unique(i))
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(200_000):
            decoder.decode(unique(i))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 200_000
