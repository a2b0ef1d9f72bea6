"""Backend URLs: parsing, redaction, resolution by scheme, named memory instances."""

from __future__ import annotations

import pytest

from microstd import _backends
from microstd.errors import UnknownBackend


def test_url_parts_and_query_options() -> None:
    url = _backends.parse_url("redis://user:secret@127.0.0.1:6380/2?prefix=app&tls=1")
    assert (url.scheme, url.host, url.port, url.path) == ("redis", "127.0.0.1", 6380, "/2")
    assert url.username == "user"
    assert url.password == "secret"
    assert url.query == {"prefix": "app", "tls": "1"}


def test_password_never_shows_in_repr_or_redacted_form() -> None:
    url = _backends.parse_url("redis://user:secret@127.0.0.1:6380/0")
    assert "secret" not in repr(url)
    assert "secret" not in url.redacted
    assert url.redacted == "redis://user:***@127.0.0.1:6380/0"


def test_memory_names() -> None:
    assert _backends.parse_url("memory://").netloc_name == ""
    assert _backends.parse_url("memory://default?impl=python").netloc_name == "default"


@pytest.mark.parametrize("bad", ["", "localhost:6379", "redis:/x", 42])
def test_not_a_url(bad: object) -> None:
    with pytest.raises(UnknownBackend):
        _backends.parse_url(bad)  # type: ignore[arg-type]


def test_bad_port_is_a_clear_error() -> None:
    with pytest.raises(UnknownBackend, match="bad port"):
        _backends.parse_url("redis://127.0.0.1:notaport/0")


def test_unknown_scheme_names_the_known_ones_and_suggests() -> None:
    builtins = {"memory": "microstd.errors:MicrostdError", "redis": "microstd.errors:NotFound"}
    with pytest.raises(UnknownBackend) as info:
        _backends.resolve("store", "rediss", builtins, "microstd.test-no-such-group")
    message = str(info.value)
    assert "memory, redis" in message
    assert "Did you mean 'redis'?" in message


def test_resolve_imports_the_builtin_lazily() -> None:
    from microstd.errors import NotFound

    found = _backends.resolve(
        "store", "redis", {"redis": "microstd.errors:NotFound"}, "microstd.stores"
    )
    assert found is NotFound


def test_shared_instances_are_per_area_impl_and_name() -> None:
    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    a = _backends.shared_instance("test-area", "rust", "x", factory)
    b = _backends.shared_instance("test-area", "rust", "x", factory)
    c = _backends.shared_instance("test-area", "python", "x", factory)
    assert a is b
    assert c is not a
    assert len(made) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("0", False),
        ("off", False),
        (True, True),
        (0, False),
    ],
)
def test_option_flags(value: object, expected: bool) -> None:
    assert _backends.option_flag(value) is expected


def test_backends_open_native_sync_or_wraps_the_async_backend() -> None:
    class Native:
        @classmethod
        def from_url(cls, parsed: _backends.ParsedURL, **options: object) -> tuple[str, object]:
            return ("async", options)

        @classmethod
        def from_url_sync(
            cls, parsed: _backends.ParsedURL, **options: object
        ) -> tuple[str, object]:
            return ("sync", options)

    class AsyncOnly:
        @classmethod
        def from_url(cls, parsed: _backends.ParsedURL, **options: object) -> str:
            return f"async:{parsed.host}"

    import types

    module = types.ModuleType("microstd_test_backends_fake")
    module.Native = Native  # type: ignore[attr-defined]
    module.AsyncOnly = AsyncOnly  # type: ignore[attr-defined]
    module.Wrap = lambda inner: ("wrapped", inner)  # type: ignore[attr-defined]
    import sys

    sys.modules[module.__name__] = module
    try:
        family = _backends.Backends(
            "test",
            "microstd.test-no-such-group",
            {"n": f"{module.__name__}:Native", "a": f"{module.__name__}:AsyncOnly"},
            blocking=f"{module.__name__}:Wrap",
        )
        assert family.open("n://x", {"k": 1}) == ("async", {"k": 1})
        assert family.open_sync("n://x", {"k": 1}) == ("sync", {"k": 1})
        assert family.open_sync("a://host1", {}) == ("wrapped", "async:host1")
        with pytest.raises(UnknownBackend, match="known: a, n"):
            family.open("zz://x", {})
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("nats://a:4222,nats://b:4223?bucket=x", (("a", 4222), ("b", 4223))),
        ("nats://a:4222, nats://b:4223", (("a", 4222), ("b", 4223))),
        ("etcd://h1,h2:2379,[::1]:2380", (("h1", None), ("h2", 2379), ("::1", 2380))),
        ("redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0", (("s1", 26379), ("s2", 26379))),
        ("redis://127.0.0.1:6379/0", (("127.0.0.1", 6379),)),
    ],
)
def test_a_url_may_name_several_servers(url: str, hosts: tuple[object, ...]) -> None:
    parsed = _backends.parse_url(url)
    assert parsed.hosts == hosts
    assert (parsed.host, parsed.port) == hosts[0]


def test_a_server_list_keeps_the_last_servers_path_and_query_and_each_servers_credentials() -> None:
    parsed = _backends.parse_url("nats://u:secret@a:1,nats://b:2/?bucket=app")
    assert parsed.servers == ("nats://u:secret@a:1", "nats://b:2")
    assert (parsed.username, parsed.password, parsed.path) == ("u", "secret", "/")
    assert parsed.query == {"bucket": "app"}
    assert "secret" not in parsed.redacted
    # A host list shares its credentials, path and query.
    parsed = _backends.parse_url("redis+sentinel://:secret@s1:26379,s2:26380/mymaster/0?x=1")
    assert parsed.servers == (
        "redis+sentinel://:secret@s1:26379",
        "redis+sentinel://:secret@s2:26380",
    )
    assert (parsed.password, parsed.path, parsed.query) == ("secret", "/mymaster/0", {"x": "1"})
    assert parsed.redacted == "redis+sentinel://:***@s1:26379,s2:26380/mymaster/0?x=1"


def test_an_option_holding_urls_is_not_a_server_list() -> None:
    parsed = _backends.parse_url("s3://bucket?endpoint_url=http://a,http://b")
    assert parsed.hosts == (("bucket", None),)
    assert parsed.query == {"endpoint_url": "http://a,http://b"}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("nats://a:1,redis://b:2", "mixes schemes"),
        ("nats://a:1/x,nats://b:2", "only the last server"),
        ("etcd://a,,b", "empty server"),
        ("etcd://a:1,b:port", "bad port"),
    ],
)
def test_a_bad_server_list_is_a_clear_error(bad: str, why: str) -> None:
    with pytest.raises(UnknownBackend, match=why):
        _backends.parse_url(bad)


def test_single_server_refuses_a_list_and_says_what_to_use() -> None:
    from microstd.errors import InvalidArgument

    _backends.parse_url("redis://a:1/0").single_server("redis://")
    with pytest.raises(InvalidArgument, match=r"redis:// takes one server, got 2.*sentinel"):
        _backends.parse_url("redis://a:1,b:2/0").single_server("redis://", "use redis+sentinel://")
