"""`codec.<format>.Decoder(T, ...)` takes the limits and hooks `loads` takes:
a reusable decoder of untrusted input refuses what `loads(data, type=T, ...)`
refuses, with the same error, and builds the same `T` from what it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from microstd import _accel, codec
from microstd.codec import Ext
from microstd.errors import DecodeError, ValidationError


@dataclass
class Order:
    sku: str
    tags: list[str]
    lines: list[list[int]]


GOOD = {"sku": "A-1", "tags": ["eu"], "lines": [[1, 2]]}
# Each breaks one limit; each limit is one the good order keeps.
HOSTILE: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (
        {"sku": "A", "tags": ["a", "b", "c", "d"], "lines": []},
        {"max_container_len": 3},
        "array of 4",
    ),
    ({"sku": "A-12345", "tags": [], "lines": []}, {"max_str_len": 5}, "str of 7 bytes"),
    ({"sku": "A", "tags": [], "lines": [[1]]}, {"max_depth": 2}, "nesting deeper than 2"),
]
FORMATS = ["msgpack", "cbor", "json"]


@pytest.fixture(params=["rust", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(_accel, "core", None)
    elif _accel.core is None:
        pytest.skip("the Rust core is not built")
    return str(request.param)


def outcome(call: Any) -> object:
    try:
        return ("ok", call())
    except ValidationError as err:
        return ("invalid", err.path, err.expected, err.found)
    except DecodeError as err:
        return ("refused", err.message, err.offset)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_decoder_with_limits_refuses_what_loads_refuses(fmt: str, impl: str) -> None:
    module = getattr(codec, fmt)
    for value, limits, message in HOSTILE:
        data = module.dumps(value)
        by_decoder = outcome(lambda: module.Decoder(Order, **limits).decode(data))  # noqa: B023
        by_loads = outcome(lambda: module.loads(data, type=Order, **limits))  # noqa: B023
        assert by_decoder == by_loads, (impl, limits)
        assert by_decoder[0] == "refused", by_decoder
        assert message in str(by_decoder[1]), by_decoder


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_decoder_with_limits_builds_the_type_from_what_they_accept(fmt: str, impl: str) -> None:
    module = getattr(codec, fmt)
    decode = module.Decoder(Order, max_container_len=3, max_str_len=5, max_depth=3).decode
    assert decode(module.dumps(GOOD)) == Order("A-1", ["eu"], [[1, 2]])
    # Still strict about the type: a limit does not loosen validation.
    bad = module.dumps({**GOOD, "tags": [7]})
    assert outcome(lambda: decode(bad)) == ("invalid", "$.tags[0]", "str", "int 7")


@pytest.mark.parametrize("fmt", ["msgpack", "cbor"])
def test_a_decoder_with_limits_enforces_the_key_rules(fmt: str, impl: str) -> None:
    module = getattr(codec, fmt)
    duplicate = b"\x82\xa1a\x01\xa1a\x02" if fmt == "msgpack" else b"\xa2\x61a\x01\x61a\x02"
    assert module.Decoder(dict[str, int]).decode(duplicate) == {"a": 2}
    with pytest.raises(DecodeError, match=r"repeat|duplicate"):
        module.Decoder(dict[str, int], unique_keys=True).decode(duplicate)
    float_key = module.dumps({1.5: 1})
    with pytest.raises(DecodeError, match="float is not a str or int"):
        module.Decoder(dict[Any, int], strict_keys=True).decode(float_key)


def test_a_msgpack_decoder_takes_an_ext_hook(impl: str) -> None:
    data = codec.msgpack.dumps({"point": Ext(7, b"\x01\x02")})

    def ext_hook(code: int, payload: bytes) -> object:
        assert code == 7
        return list(payload)

    assert codec.msgpack.Decoder(dict[str, list[int]], ext_hook=ext_hook).decode(data) == {
        "point": [1, 2]
    }


def test_a_cbor_decoder_takes_a_tag_hook(impl: str) -> None:
    data = codec.cbor.dumps({"point": codec.Tag(4000, [1, 2])})

    def tag_hook(tag: int, value: object) -> object:
        assert tag == 4000
        return value

    assert codec.cbor.Decoder(dict[str, list[int]], tag_hook=tag_hook).decode(data) == {
        "point": [1, 2]
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_limits_fail_when_the_decoder_is_made(fmt: str) -> None:
    with pytest.raises(ValueError, match="max_depth must be a non-negative int or None"):
        getattr(codec, fmt).Decoder(Order, max_depth=-1)
