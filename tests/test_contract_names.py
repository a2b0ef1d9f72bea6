"""Every public name DESIGN.md shows works as it shows it.

DESIGN.md (the public contract) is walked section by section; each name,
signature or snippet it shows is one check, registered under that name, so a
failing one is reported by name (`pytest -k "store.read_many"`). The checks
make real calls on the embedded defaults (`memory://`, `file://`, the
in-process RPC transport) and run the `microstd` command in a subprocess;
the network engines' own behaviour is the contract suites' business
(tests/contract/), here only that their schemes resolve and that a missing
client library says which extra to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import microstd
from microstd import codec, config, errors
from microstd.errors import (
    Closed,
    ConfigError,
    Conflict,
    DecodeError,
    EncodeError,
    InvalidArgument,
    InvalidKey,
    LockLost,
    LockTimeout,
    MicrostdError,
    NotFound,
    NotSupported,
    ServiceError,
    UnknownBackend,
    UnknownContentType,
    ValidationError,
)

ROOT = Path(__file__).resolve().parents[1]
Check = Callable[[Path], Awaitable[None] | None]
CHECKS: dict[str, Check] = {}


def contract(name: str) -> Callable[[Check], Check]:
    """Register a check under the contract name it proves."""

    def register(fn: Check) -> Check:
        assert name not in CHECKS, name
        CHECKS[name] = fn
        return fn

    return register


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), *filter(None, [env.get("PYTHONPATH")])]
    )
    for name in ("MICROSTD_REGISTRY", "MICROSTD_BROKER", "MICROSTD_TRANSPORT"):
        env.pop(name, None)
    return env


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "microstd", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


async def _eventually(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


AREAS = ("store", "broker", "sync", "registry")


# --- Backends by URL ---------------------------------------------------------------------


def _area_open_check(area: str, surface: str, how: str) -> Check:
    async def check(tmp: Path) -> None:
        module = getattr(microstd, area)
        opener = getattr(module, surface)
        if how == "url":
            handle = opener("memory://")
        elif how == "query":
            handle = opener("memory://?impl=python")
        else:
            handle = opener("memory://", impl="python")
        if surface == "open":
            assert inspect.iscoroutinefunction(handle.connect)
            async with handle as entered:
                assert entered is handle
            with pytest.raises(Closed):
                await handle.connect()
        else:
            assert not inspect.iscoroutinefunction(handle.connect)
            with handle as entered:
                assert entered is handle
            with pytest.raises(Closed):
                handle.connect()

    return check


for _area in AREAS:
    for _surface in ("open", "open_sync"):
        contract(f"microstd.{_area}.{_surface}('memory://')")(
            _area_open_check(_area, _surface, "url")
        )
        contract(f"microstd.{_area}.{_surface}('memory://?impl=python')")(
            _area_open_check(_area, _surface, "query")
        )
        contract(f"microstd.{_area}.{_surface}('memory://', impl='python')")(
            _area_open_check(_area, _surface, "keyword")
        )


def _impl_is_python_check(area: str) -> Check:
    def check(tmp: Path) -> None:
        # The pure twin and the Rust core are different classes; both spellings pick the twin.
        module = getattr(microstd, area)
        by_query = module.open_sync("memory://?impl=python")
        by_keyword = module.open_sync("memory://", impl="python")
        default = module.open_sync("memory://")
        try:
            assert type(by_query) is type(by_keyword)
            if microstd.RUST_CORE_AVAILABLE and area != "registry":
                inner = [_innermost(h) for h in (by_query, default)]
                assert type(inner[0]) is not type(inner[1]), inner
        finally:
            for handle in (by_query, by_keyword, default):
                handle.close()

    return check


def _innermost(handle: object) -> object:
    for attr in ("_store", "_broker", "_locks", "_inner", "_core", "_impl"):
        inner = getattr(handle, attr, None)
        if inner is not None:
            return inner
    return handle


for _area in AREAS:
    contract(f"microstd.{_area} impl=python selects the pure twin")(_impl_is_python_check(_area))


def _unknown_scheme_check(area: str, surface: str) -> Check:
    def check(tmp: Path) -> None:
        opener = getattr(getattr(microstd, area), surface)
        with pytest.raises(UnknownBackend) as info:
            opener("memroy://")
        message = str(info.value)
        assert "known: " in message, message
        assert "Did you mean 'memory'?" in message, message

    return check


for _area in AREAS:
    for _surface in ("open", "open_sync"):
        contract(f"microstd.{_area}.{_surface}(unknown scheme) -> UnknownBackend")(
            _unknown_scheme_check(_area, _surface)
        )


@contract("MICROSTD_PURE=1: everything runs on the twins; impl='rust' is NotSupported")
def _pure(tmp: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import microstd
        from microstd import codec
        from microstd.errors import NotSupported
        assert microstd.RUST_CORE_AVAILABLE is False
        assert codec.msgpack.loads(codec.msgpack.dumps({"a": [1]})) == {"a": [1]}
        for area in ("store", "broker", "sync"):
            module = getattr(microstd, area)
            module.open_sync("memory://").close()
            try:
                module.open("memory://?impl=rust")
            except NotSupported as exc:
                assert "impl='python'" in str(exc)
            else:
                raise AssertionError(area)
        print("ok")
        """
    )
    env = _env()
    env["MICROSTD_PURE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr


@contract("UnknownBackend for a string that is not a URL")
def _not_a_url(tmp: Path) -> None:
    with pytest.raises(UnknownBackend, match="scheme://"):
        microstd.store.open("memory")


def _bad_option_check(area: str) -> Check:
    def check(tmp: Path) -> None:
        module = getattr(microstd, area)
        with pytest.raises(InvalidArgument, match="Did you mean 'impl'"):
            module.open("memory://", imlp="python")
        with pytest.raises(InvalidArgument, match="impl"):
            module.open("memory://?impl=java")

    return check


for _area in AREAS:
    contract(f"microstd.{_area}.open: a bad option name is InvalidArgument")(
        _bad_option_check(_area)
    )


NETWORK_URLS = [
    ("store", "redis://127.0.0.1:1/0"),
    ("store", "file:///tmp/microstd-contract-options.db"),
    ("store", "s3://bucket"),
    ("store", "nats://127.0.0.1:1?bucket=a"),
    ("store", "postgresql://127.0.0.1:1/x"),
    ("broker", "redis://127.0.0.1:1/0"),
    ("broker", "nats://127.0.0.1:1"),
    ("broker", "amqp://127.0.0.1:1/"),
    ("broker", "postgresql://127.0.0.1:1/x"),
    ("sync", "redis://127.0.0.1:1/0"),
    ("sync", "etcd://127.0.0.1:1"),
    ("sync", "postgresql://127.0.0.1:1/x"),
    ("registry", "redis://127.0.0.1:1/0"),
    ("registry", "etcd://127.0.0.1:1"),
    ("registry", "nats://127.0.0.1:1"),
    ("registry", "postgresql://127.0.0.1:1/x"),
]


def _bad_network_option_check(area: str, url: str) -> Check:
    def check(tmp: Path) -> None:
        with pytest.raises(InvalidArgument, match="tiemout"):
            getattr(microstd, area).open(url, tiemout=1)

    return check


for _area, _url in NETWORK_URLS:
    contract(f"microstd.{_area}.open('{_url.split(':')[0]}://', bad option) -> InvalidArgument")(
        _bad_network_option_check(_area, _url)
    )


def _redis_query_typo_check(area: str) -> Check:
    def check(tmp: Path) -> None:
        # redis-py would take the typo and fail at the first command, deep inside itself.
        with pytest.raises(InvalidArgument, match=r"tiemout.*Did you mean '[a-z_]*timeout'"):
            getattr(microstd, area).open("redis://127.0.0.1:1/0?tiemout=1")
        getattr(microstd, area).open("redis://127.0.0.1:1/0?timeout=1")

    return check


for _area in AREAS:
    contract(f"microstd.{_area}.open('redis://...?typo=1') -> InvalidArgument")(
        _redis_query_typo_check(_area)
    )


@contract("a backend's unknown keyword option: InvalidArgument listing the known ones")
def _known_options_listed(tmp: Path) -> None:
    for area, url in (
        ("store", f"file://{tmp}/o.db"),
        ("sync", "redis://127.0.0.1:1/0"),
        ("sync", "etcd://127.0.0.1:1"),
    ):
        with pytest.raises(InvalidArgument, match=r"known: .*Did you mean 'timeout'\?") as info:
            getattr(microstd, area).open(url, tiemout=1)
        assert "__init__" not in str(info.value)


@contract("a URL missing what its backend needs is InvalidArgument saying what")
def _incomplete_urls(tmp: Path) -> None:
    for area, url, needs in (
        ("store", "file://", "path"),
        ("broker", "file://", "path"),
        ("store", "s3://", "bucket"),
    ):
        with pytest.raises(InvalidArgument, match=needs):
            getattr(microstd, area).open(url)


@contract("microstd.registry.open('memory://?impl=rust') says the registry is pure Python")
def _registry_rust(tmp: Path) -> None:
    with pytest.raises(NotSupported, match="pure Python"):
        microstd.registry.open("memory://?impl=rust")


@contract("an unknown scheme another library uses gets a 'did you mean'")
def _other_names(tmp: Path) -> None:
    with pytest.raises(UnknownBackend, match="Did you mean 'file'"):
        microstd.store.open("sqlite:///app.db")
    with pytest.raises(UnknownBackend, match="Did you mean 'amqp'"):
        microstd.broker.open("rabbitmq://127.0.0.1")


ENTRY_POINT_GROUPS = {
    "microstd.stores": ("store", "microstd.store.memory:MemoryBackend"),
    "microstd.brokers": ("broker", "microstd.broker.memory:MemoryBackend"),
    "microstd.sync": ("sync", "microstd.sync.memory:MemoryBackend"),
    "microstd.registries": ("registry", "microstd.registry.memory:MemoryRegistry"),
}


def _entry_point_check(group: str) -> Check:
    area, target = ENTRY_POINT_GROUPS[group]

    def check(tmp: Path) -> None:
        scheme = f"thirdparty{area}"
        dist = tmp / "thirdparty-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[{group}]\n{scheme} = {target}\n")
        sys.path.insert(0, str(tmp))
        try:
            handle = getattr(microstd, area).open_sync(f"{scheme}://")
            handle.close()
            with pytest.raises(UnknownBackend, match=scheme):
                getattr(microstd, area).open("nosuchscheme://")
        finally:
            sys.path.remove(str(tmp))

    return check


for _group in ENTRY_POINT_GROUPS:
    contract(f"entry point group {_group}")(_entry_point_check(_group))


@contract("entry point group microstd.codecs")
def _codec_entry_point(tmp: Path) -> None:
    from microstd.codec import registry

    dist = tmp / "thirdcodec-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdcodec\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[microstd.codecs]\nrot = thirdcodec_mod:CODEC\n", encoding="utf-8"
    )
    (tmp / "thirdcodec_mod.py").write_text(
        "from microstd.codec import Codec\n"
        "CODEC = Codec('application/x-reversed', lambda o: bytes(o)[::-1],"
        " lambda d: bytes(d)[::-1])\n"
    )
    sys.path.insert(0, str(tmp))
    loaded = registry._entry_points_loaded
    registry._entry_points_loaded = False
    try:
        c = codec.get("application/x-reversed")
        assert c.loads(c.dumps(b"abc")) == b"abc"
        assert c.dumps(b"abc") == b"cba"
    finally:
        registry._entry_points_loaded = loaded
        sys.path.remove(str(tmp))
        sys.modules.pop("thirdcodec_mod", None)


# Every built-in scheme DESIGN.md names resolves to a backend (no connection is made: an
# engine connects on connect() / first use).
SCHEMES = {
    "store": [
        "file:///tmp/microstd-contract.db",
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "nats://127.0.0.1:4222?bucket=app",
        "s3://bucket?endpoint_url=http://127.0.0.1:9",
        "postgresql://127.0.0.1:5432/app",
    ],
    "broker": [
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "nats://127.0.0.1:4222",
        "amqp://127.0.0.1:5672/",
        "file:///tmp/microstd-contract-broker.db",
        "postgresql://127.0.0.1:5432/app",
    ],
    "sync": [
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "etcd://127.0.0.1:2379",
        "postgresql://127.0.0.1:5432/app",
    ],
    "registry": [
        "redis://127.0.0.1:6379/0",
        "rediss://127.0.0.1:6379/0",
        "etcd://127.0.0.1:2379",
        "nats://127.0.0.1:4222",
        "postgresql://127.0.0.1:5432/app",
    ],
}


def _scheme_check(area: str, url: str) -> Check:
    async def check(tmp: Path) -> None:
        if url.startswith("file://"):
            local = f"file://{tmp}/{area}.db"
            handle = getattr(microstd, area).open(local)
        else:
            handle = getattr(microstd, area).open(url)
        assert isinstance(handle, _INTERFACES[area]())
        await handle.close()

    return check


_INTERFACES: dict[str, Callable[[], type]] = {
    "store": lambda: microstd.store.Store,
    "broker": lambda: microstd.broker.Broker,
    "sync": lambda: microstd.sync.Locks,
    "registry": lambda: microstd.registry.Registry,
}

for _area, _urls in SCHEMES.items():
    for _url in _urls:
        contract(f"microstd.{_area}.open('{_url.split('?')[0].split('/')[0]}//...')")(
            _scheme_check(_area, _url)
        )


# A missing client library is a clear microstd error naming the extra to install.
MISSING = [
    ("store", "redis://127.0.0.1:1/0", "redis", "redis"),
    ("broker", "redis://127.0.0.1:1/0", "redis", "redis"),
    ("sync", "redis://127.0.0.1:1/0", "redis", "redis"),
    ("registry", "redis://127.0.0.1:1/0", "redis", "redis"),
    ("store", "nats://127.0.0.1:1?bucket=a", "nats", "nats"),
    ("broker", "nats://127.0.0.1:1", "nats", "nats"),
    ("registry", "nats://127.0.0.1:1", "nats", "nats"),
    ("broker", "amqp://127.0.0.1:1/", "aio_pika", "amqp"),
    ("store", "s3://b?endpoint_url=http://127.0.0.1:1", "aiobotocore", "s3"),
    ("store", "postgresql://127.0.0.1:1/x", "asyncpg", "postgres"),
    ("broker", "postgresql://127.0.0.1:1/x", "asyncpg", "postgres"),
    ("sync", "postgresql://127.0.0.1:1/x", "asyncpg", "postgres"),
    ("registry", "postgresql://127.0.0.1:1/x", "asyncpg", "postgres"),
    ("sync", "etcd://127.0.0.1:1", "aiohttp", "etcd"),
    ("registry", "etcd://127.0.0.1:1", "aiohttp", "etcd"),
]


CONFIG_SOURCES_MISSING = [
    ("redis", "config.redis('redis://127.0.0.1:1/0', key='app')", "redis"),
    ("nats", "config.nats('nats://127.0.0.1:1', bucket='b')", "nats"),
    ("asyncpg", "config.postgres('postgresql://127.0.0.1:1/x')", "postgres"),
    ("aiohttp", "config.etcd('etcd://127.0.0.1:1', prefix='app/')", "etcd"),
    ("aiohttp", "config.consul('http://127.0.0.1:1', prefix='app/')", "http"),
    ("aiohttp", "config.vault('http://127.0.0.1:1', path='app', token='t')", "http"),
]


def _config_source_missing_check(module: str, source: str, extra: str) -> Check:
    def check(tmp: Path) -> None:
        script = textwrap.dedent(
            f"""
            import sys
            sys.modules[{module!r}] = None
            from microstd import config
            from microstd.errors import MissingDependency
            try:
                {source}
            except MissingDependency as exc:
                print(exc)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert f"pip install 'microstd[{extra}]'" in done.stdout, (done.stdout, done.stderr)

    return check


for _module, _source, _extra in CONFIG_SOURCES_MISSING:
    contract(f"{_source.split('(')[0]}() without {_module} -> MissingDependency")(
        _config_source_missing_check(_module, _source, _extra)
    )


@contract("microstd.Service without aiohttp -> MissingDependency naming microstd[http]")
def _service_without_aiohttp(tmp: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["aiohttp"] = None
        import microstd
        from microstd.errors import MissingDependency
        async def main():
            async with microstd.Service("nohttp"):
                pass
        try:
            asyncio.run(main())
        except MissingDependency as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert "pip install 'microstd[http]'" in done.stdout, (done.stdout, done.stderr)


def _missing_dependency_check(area: str, url: str, module: str, extra: str) -> Check:
    def check(tmp: Path) -> None:
        # A fresh interpreter where the client library cannot be imported.
        script = textwrap.dedent(
            f"""
            import asyncio, sys
            sys.modules[{module!r}] = None
            import microstd
            from microstd.errors import MicrostdError
            async def main():
                handle = microstd.{area}.open({url!r})
                await handle.connect()
            try:
                asyncio.run(main())
            except MicrostdError as exc:
                assert isinstance(exc, ImportError), type(exc).__mro__
                print(type(exc).__name__, exc)
            else:
                print("no error")
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout.strip()
        assert out.startswith("MissingDependency "), out
        assert f"pip install 'microstd[{extra}]'" in out, out

    return check


for _area, _url, _module, _extra in MISSING:
    contract(f"microstd.{_area}.open('{_url.split(':')[0]}://') without {_module}")(
        _missing_dependency_check(_area, _url, _module, _extra)
    )


# --- codec -------------------------------------------------------------------------------

SAMPLE = {"id": 7, "tags": ["a", "b"], "price": 2.5, "none": None, "raw": b"\x00\x01"}


@contract("codec.msgpack.dumps(obj, *, default=None, sort_keys=False) -> bytes")
def _msgpack_dumps(tmp: Path) -> None:
    data = codec.msgpack.dumps(SAMPLE, default=None, sort_keys=False)
    assert isinstance(data, bytes)
    assert codec.msgpack.dumps({"b": 1, "a": 2}, sort_keys=True) == codec.msgpack.dumps(
        {"a": 2, "b": 1}
    )
    assert codec.msgpack.loads(codec.msgpack.dumps(object(), default=lambda o: "x")) == "x"
    with pytest.raises(TypeError):
        codec.msgpack.dumps(SAMPLE, True)  # type: ignore[misc]


@contract("codec.msgpack.loads(data) -> object")
def _msgpack_loads(tmp: Path) -> None:
    assert codec.msgpack.loads(codec.msgpack.dumps(SAMPLE)) == SAMPLE


@contract("codec.cbor.dumps(obj, *, canonical=False, default=None) -> bytes")
def _cbor_dumps(tmp: Path) -> None:
    data = codec.cbor.dumps(SAMPLE, canonical=False, default=None)
    assert isinstance(data, bytes)
    assert codec.cbor.dumps({"b": 1, "a": 2}, canonical=True) == codec.cbor.dumps(
        {"a": 2, "b": 1}, canonical=True
    )
    assert codec.cbor.loads(codec.cbor.dumps(object(), default=lambda o: "x")) == "x"


@contract("codec.cbor.loads(data) -> object")
def _cbor_loads(tmp: Path) -> None:
    assert codec.cbor.loads(codec.cbor.dumps(SAMPLE)) == SAMPLE


@contract("codec.json.dumps(obj) -> bytes")
def _json_dumps(tmp: Path) -> None:
    data = codec.json.dumps({"id": 7, "tags": ["a"]})
    assert isinstance(data, bytes)
    assert json.loads(data) == {"id": 7, "tags": ["a"]}


@contract("codec.json.loads(data) -> object")
def _json_loads(tmp: Path) -> None:
    assert codec.json.loads(b'{"id": 7, "tags": ["a"]}') == {"id": 7, "tags": ["a"]}


CONTENT_TYPES = [
    "application/msgpack",
    "application/x-msgpack",
    "application/cbor",
    "application/json",
    "application/octet-stream",
    "text/plain",
]


def _content_type_check(content_type: str, impl: str | None) -> Check:
    def check(tmp: Path) -> None:
        c = codec.get(content_type) if impl is None else codec.get(content_type, impl=impl)
        assert isinstance(c, codec.Codec)
        assert isinstance(c.content_type, str)
        value: object
        if content_type == "application/octet-stream":
            value = b"\x00raw"
        elif content_type == "text/plain":
            value = "héllo"
        else:
            value = {"a": [1, 2.5, None, "x"]}
        data = c.dumps(value)
        assert isinstance(data, bytes)
        assert c.loads(data) == value

    return check


for _ct in CONTENT_TYPES:
    contract(f"codec.get({_ct!r})")(_content_type_check(_ct, None))
    contract(f"codec.get({_ct!r}, impl='python')")(_content_type_check(_ct, "python"))


@contract("codec.get(unknown) -> UnknownContentType")
def _unknown_content_type(tmp: Path) -> None:
    with pytest.raises(UnknownContentType, match="application/json"):
        codec.get("application/jsn")


@contract("codec.get(impl=bad) -> InvalidArgument")
def _bad_codec_impl(tmp: Path) -> None:
    with pytest.raises(InvalidArgument, match="python"):
        codec.get("application/json", impl="java")


@contract("codec.register(c)")
def _codec_register(tmp: Path) -> None:
    c = codec.Codec("application/x-contract-test", lambda o: bytes(o), lambda d: bytes(d))
    codec.register(c)
    assert codec.get("application/x-contract-test") is c
    assert codec.get("application/x-contract-test", impl="python") is c
    replacement = codec.Codec("application/x-contract-test", lambda o: b"r", lambda d: b"r")
    codec.register(replacement)
    assert codec.get("application/x-contract-test") is replacement


@contract("EncodeError(TypeError, ValueError) names the type and path")
def _encode_error(tmp: Path) -> None:
    for dumps in (codec.msgpack.dumps, codec.cbor.dumps, codec.json.dumps):
        with pytest.raises(EncodeError) as info:
            dumps({"items": [1, object()]})
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, ValueError)
        assert "object" in str(info.value)
        assert info.value.path == "$.items[1]", (dumps, info.value.path)


@contract("DecodeError(ValueError) gives the byte offset")
def _decode_error(tmp: Path) -> None:
    for loads in (codec.msgpack.loads, codec.cbor.loads, codec.json.loads):
        with pytest.raises(DecodeError) as info:
            loads(b"\xc1\xc1\xc1" if loads is not codec.json.loads else b'{"a": nope}')
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value.offset, int)
        assert "byte" in str(info.value)


@dataclasses.dataclass
class Item:
    name: str
    price: float


def _typed_loads_check(fmt: str) -> Check:
    def check(tmp: Path) -> None:
        module = getattr(codec, fmt)
        data = module.dumps({"name": "tea", "price": 2.5})
        assert module.loads(data, type=Item) == Item("tea", 2.5)
        assert module.loads(module.dumps([{"name": "a", "price": 1}]), type=list[Item]) == [
            Item("a", 1.0)
        ]
        with pytest.raises(ValidationError) as info:
            module.loads(module.dumps({"name": "tea", "price": "x"}), type=Item)
        assert isinstance(info.value, DecodeError)
        assert info.value.path == "$.price"
        decoder = module.Decoder(Item)
        assert decoder.decode(data) == Item("tea", 2.5)
        assert decoder.decode(data) == Item("tea", 2.5)

    return check


for _fmt in ("msgpack", "cbor", "json"):
    contract(f"codec.{_fmt}.loads(data, type=T) and codec.{_fmt}.Decoder(T)")(
        _typed_loads_check(_fmt)
    )


@contract("codec.convert(obj, T)")
def _codec_convert(tmp: Path) -> None:
    assert codec.convert({"name": "tea", "price": 2}, Item) == Item("tea", 2.0)
    with pytest.raises(ValidationError, match="name"):
        codec.convert({"price": 2}, Item)


@contract("codec.Timestamp(seconds, nanoseconds)")
def _timestamp(tmp: Path) -> None:
    ts = codec.Timestamp(1_700_000_000, 123_456_789)
    assert (ts.seconds, ts.nanoseconds) == (1_700_000_000, 123_456_789)
    assert codec.msgpack.loads(codec.msgpack.dumps(ts), type=codec.Timestamp) == ts
    # CBOR's tag 1 carries nanoseconds as the nearest float (docs/codec.md).
    back = codec.cbor.loads(codec.cbor.dumps(ts), type=codec.Timestamp)
    assert back.seconds == ts.seconds
    assert abs(back.nanoseconds - ts.nanoseconds) < 1000
    assert codec.json.loads(codec.json.dumps(ts), type=codec.Timestamp) == ts


# --- store -------------------------------------------------------------------------------

STORE_URLS = ["memory://", "memory://?impl=python", "file"]


def _store_url(url: str, tmp: Path) -> str:
    return f"file://{tmp}/app.db" if url == "file" else url


def _store_check(url: str, body: Callable[[Any], Awaitable[None]]) -> Check:
    async def check(tmp: Path) -> None:
        store = microstd.store.open(_store_url(url, tmp))
        async with store:
            await body(store)

    return check


def store_contract(name: str) -> Callable[[Callable[[Any], Awaitable[None]]], None]:
    def register(body: Callable[[Any], Awaitable[None]]) -> None:
        for url in STORE_URLS:
            contract(f"{name} [{url}]")(_store_check(url, body))

    return register


@store_contract("store.write(key, value, *, ttl, metadata, if_revision, if_absent) -> rev")
async def _store_write(store: Any) -> None:
    rev = await store.write(
        "k", {"v": 1}, ttl=None, metadata=None, if_revision=None, if_absent=False
    )
    assert rev is not None
    rev2 = await store.write("k", {"v": 2}, if_revision=rev)
    assert rev2 != rev
    with pytest.raises(Conflict):
        await store.write("k", {"v": 3}, if_revision=rev)
    with pytest.raises(Conflict):
        await store.write("k", {"v": 3}, if_absent=True)
    await store.write("fresh", 1, if_absent=True)
    rev3 = await store.write("m", "x", ttl=60, metadata={"by": "me"})
    rec = await store.read("m")
    assert rec.metadata == {"by": "me"}
    assert rec.revision == rev3
    assert rec.expires_at is not None
    assert abs(rec.expires_at - (time.time() + 60)) < 30


@store_contract("store.read(key) -> Record(key, value, metadata, revision, expires_at)")
async def _store_read(store: Any) -> None:
    value = {"name": "Ada", "tags": ["x"]}
    rev = await store.write("user/1", value)
    rec = await store.read("user/1")
    assert isinstance(rec, microstd.store.Record)
    assert (rec.key, rec.value, rec.metadata, rec.revision, rec.expires_at) == (
        "user/1",
        value,
        rec.metadata,
        rev,
        None,
    )
    assert not rec.metadata
    rec.value["tags"].append("y")  # a copy: neither the stored record nor the caller's object
    assert value == {"name": "Ada", "tags": ["x"]}
    assert (await store.read("user/1")).value == {"name": "Ada", "tags": ["x"]}
    await store.write("b", b"bytes stay bytes")
    assert (await store.read("b")).value == b"bytes stay bytes"
    with pytest.raises(NotFound):
        await store.read("missing")
    with pytest.raises(KeyError):
        await store.read("missing")


@store_contract("store.read: NotFound once expired")
async def _store_expired(store: Any) -> None:
    await store.write("short", 1, ttl=0.05)
    await asyncio.sleep(0.1)
    with pytest.raises(NotFound):
        await store.read("short")
    assert not await store.exists("short")


@store_contract("store.read(key, type=T)")
async def _store_typed(store: Any) -> None:
    await store.write("item", {"name": "tea", "price": 2.5})
    assert (await store.read("item", type=Item)).value == Item("tea", 2.5)


@store_contract("store.read_many(keys): missing keys are absent")
async def _store_read_many(store: Any) -> None:
    await store.write("a", 1)
    await store.write("b", 2)
    found = await store.read_many(["a", "b", "zz"])
    assert set(found) == {"a", "b"}
    assert found["a"].value == 1
    assert found["b"].value == 2


@store_contract("store.list(prefix, suffix, limit, offset): sorted, filter then page")
async def _store_list(store: Any) -> None:
    for key in ("u/3.json", "u/1.json", "u/2.txt", "t/1.json", "u/4.json"):
        await store.write(key, 1)
    assert await store.list() == sorted(["u/3.json", "u/1.json", "u/2.txt", "t/1.json", "u/4.json"])
    assert await store.list(prefix="u/") == ["u/1.json", "u/2.txt", "u/3.json", "u/4.json"]
    assert await store.list(prefix="u/", suffix=".json") == ["u/1.json", "u/3.json", "u/4.json"]
    assert await store.list(prefix="u/", suffix=".json", limit=1, offset=1) == ["u/3.json"]
    assert await store.list(prefix="", suffix="", limit=None, offset=0) == await store.list()


@store_contract("store.exists(key)")
async def _store_exists(store: Any) -> None:
    assert await store.exists("k") is False
    await store.write("k", 1)
    assert await store.exists("k") is True


@store_contract("store.delete(key): a missing key is not an error")
async def _store_delete(store: Any) -> None:
    rev = await store.write("k", 1)
    await store.delete("k")
    await store.delete("k")
    with pytest.raises(NotFound):
        await store.read("k")
    with pytest.raises(Conflict):  # if_revision on a deleted key
        await store.write("k", 2, if_revision=rev)


@store_contract("store.watch(prefix) -> Event(kind, key, record)")
async def _store_watch(store: Any) -> None:
    events: list[Any] = []
    ready = asyncio.Event()

    async def watch() -> None:
        watcher = store.watch(prefix="w/")
        ready.set()
        async for ev in watcher:
            events.append(ev)
            if len(events) == 2:
                return

    task = asyncio.create_task(watch())
    await ready.wait()
    # The watch is live once a write shows up; retry the first write until it does.
    deadline = time.monotonic() + 10
    while not events:
        await store.write("w/a", 1)
        await asyncio.sleep(0.05)
        assert time.monotonic() < deadline, "watch saw nothing"
    await store.write("other", 1)
    await store.delete("w/a")
    await asyncio.wait_for(task, 10)
    put, delete = events[0], events[-1]
    assert isinstance(put, microstd.store.Event)
    assert (put.kind, put.key, put.record.value) == ("put", "w/a", 1)
    assert (delete.kind, delete.key) == ("delete", "w/a")


@store_contract("store.watch: Event(kind='expire') when a TTL runs out")
async def _store_watch_expire(store: Any) -> None:
    watcher = store.watch(prefix="x/")
    seen: list[Any] = []

    async def collect() -> None:
        async for ev in watcher:
            seen.append(ev)
            if ev.kind == "expire":
                return

    task = asyncio.create_task(collect())
    deadline = time.monotonic() + 10
    while not seen:  # the watch is live once it sees a write
        await store.write("x/live", 1)
        await asyncio.wait([task], timeout=0.05)
        assert time.monotonic() < deadline, "watch saw nothing"
    await store.write("x/short", 1, ttl=0.05)
    deadline = time.monotonic() + 10
    while not task.done():
        await asyncio.wait([task], timeout=0.05)
        await store.exists("x/short")  # a lazy expirer notices on access
        assert time.monotonic() < deadline, [ev.kind for ev in seen]
    assert (seen[-1].kind, seen[-1].key) == ("expire", "x/short")


def _bad_key_check(url: str) -> Check:
    async def check(tmp: Path) -> None:
        async with microstd.store.open(_store_url(url, tmp)) as store:
            for bad in ("", 1, None, b"k"):
                with pytest.raises(InvalidKey):
                    await store.write(bad, 1)
                with pytest.raises(ValueError):
                    await store.read(bad)

    return check


for _url in STORE_URLS:
    contract(f"store: bad keys raise InvalidKey [{_url}]")(_bad_key_check(_url))


@contract("store.open_sync: the blocking twin has the same methods")
def _store_sync(tmp: Path) -> None:
    for url in ("memory://", "memory://?impl=python", f"file://{tmp}/s.db"):
        with microstd.store.open_sync(url) as store:
            rev = store.write("k", b"v", ttl=None, metadata=None, if_revision=None, if_absent=True)
            assert store.read("k").revision == rev
            assert set(store.read_many(["k", "x"])) == {"k"}
            assert store.list(prefix="", suffix="", limit=None, offset=0) == ["k"]
            assert store.exists("k")
            store.delete("k")
            store.delete("k")
            with pytest.raises(NotFound):
                store.read("k")
        assert hasattr(store, "watch")


@contract("store: memory://NAME is shared, memory:// is private")
def _memory_names(tmp: Path) -> None:
    a = microstd.store.open_sync("memory://contract-shared")
    b = microstd.store.open_sync("memory://contract-shared")
    private = microstd.store.open_sync("memory://")
    a.write("k", 1)
    assert b.read("k").value == 1
    assert not private.exists("k")
    for handle in (a, b, private):
        handle.close()


def _shared_surfaces_check(area: str, impl: str) -> Check:
    async def check(tmp: Path) -> None:
        url = f"memory://contract-surfaces-{area}-{impl}?impl={impl}"
        module = getattr(microstd, area)
        blocking = module.open_sync(url)
        async with module.open(url) as handle:
            if area == "store":
                blocking.write("k", 1)
                assert (await handle.read("k")).value == 1
            elif area == "broker":
                got: list[Any] = []
                await handle.subscribe("s", got.append)
                blocking.publish("s", 1)
                await _eventually(lambda: bool(got), "delivery across surfaces")
            else:
                lease = blocking.acquire("n", ttl=10)
                with pytest.raises(LockTimeout):
                    await handle.acquire("n", ttl=10, wait=0)
                lease.release()
        blocking.close()

    return check


for _area in ("store", "broker", "sync"):
    for _impl in ("rust", "python"):
        contract(f"microstd.{_area}: memory://NAME is shared by both surfaces [{_impl}]")(
            _shared_surfaces_check(_area, _impl)
        )


@contract("store: watch on S3 raises NotSupported")
async def _s3_watch(tmp: Path) -> None:
    store = microstd.store.open("s3://bucket?endpoint_url=http://127.0.0.1:9")
    try:
        with pytest.raises(NotSupported, match="watch"):
            await _first(store.watch())
    finally:
        await store.close()


async def _first(events: Any) -> Any:
    async for event in events:
        return event
    return None


# --- broker ------------------------------------------------------------------------------

BROKER_URLS = ["memory://", "memory://?impl=python", "file"]


def _broker_url(url: str, tmp: Path) -> str:
    return f"file://{tmp}/broker.db" if url == "file" else url


def _broker_check(url: str, body: Callable[[Any], Awaitable[None]]) -> Check:
    async def check(tmp: Path) -> None:
        async with microstd.broker.open(_broker_url(url, tmp)) as broker:
            await body(broker)

    return check


def broker_contract(name: str) -> Callable[[Callable[[Any], Awaitable[None]]], None]:
    def register(body: Callable[[Any], Awaitable[None]]) -> None:
        for url in BROKER_URLS:
            contract(f"{name} [{url}]")(_broker_check(url, body))

    return register


@broker_contract("broker.subscribe(pattern, handler, queue=None); publish(topic, body, ...)")
async def _broker_pubsub(broker: Any) -> None:
    got: list[Any] = []

    async def handler(msg: Any) -> None:
        got.append(msg)

    sub = await broker.subscribe("orders.*", handler, queue=None)
    await broker.publish("orders.created", {"id": 1}, headers={"h": "v"}, content_type=None)
    await _eventually(lambda: len(got) == 1, "delivery")
    msg = got[0]
    assert isinstance(msg, microstd.broker.Message)
    assert (msg.topic, msg.decode(), msg.content_type) == (
        "orders.created",
        {"id": 1},
        "application/msgpack",
    )
    assert msg.headers.get("h") == "v"
    assert isinstance(msg.data, bytes)
    await sub.unsubscribe()
    await broker.publish("orders.created", {"id": 2})
    await asyncio.sleep(0.05)
    assert len(got) == 1


@broker_contract("broker: '*' is one token, '>' one or more trailing tokens")
async def _broker_wildcards(broker: Any) -> None:
    star: list[str] = []
    tail: list[str] = []
    await broker.subscribe("a.*", lambda m: star.append(m.topic))
    await broker.subscribe("a.>", lambda m: tail.append(m.topic))
    for topic in ("a", "a.b", "a.b.c", "x.b"):
        await broker.publish(topic, b"")
    await broker.publish("a.end", b"")
    await _eventually(lambda: star[-1:] == ["a.end"] and tail[-1:] == ["a.end"], "delivery")
    assert star == ["a.b", "a.end"]
    assert tail == ["a.b", "a.b.c", "a.end"]


@broker_contract("broker: exactly one member of a queue group gets each message")
async def _broker_queue(broker: Any) -> None:
    group: list[int] = []
    everyone: list[int] = []
    for _ in range(3):
        await broker.subscribe("jobs.>", lambda m: group.append(m.decode()), queue="workers")
    await broker.subscribe("jobs.>", lambda m: everyone.append(m.decode()))
    for i in range(10):
        await broker.publish("jobs.x", i)
    await _eventually(lambda: len(everyone) == 10 and len(group) >= 10, "delivery")
    await asyncio.sleep(0.05)
    assert sorted(group) == list(range(10))


@broker_contract("broker: bytes body passes through as application/octet-stream")
async def _broker_bytes(broker: Any) -> None:
    got: list[Any] = []
    await broker.subscribe("b", got.append)
    await broker.publish("b", b"\x00raw")
    await _eventually(lambda: bool(got), "delivery")
    assert (got[0].data, got[0].content_type, got[0].decode()) == (
        b"\x00raw",
        "application/octet-stream",
        b"\x00raw",
    )


@broker_contract("broker: content_type= encodes the body")
async def _broker_content_type(broker: Any) -> None:
    got: list[Any] = []
    await broker.subscribe("c", got.append)
    await broker.publish("c", {"a": 1}, content_type="application/json")
    await _eventually(lambda: bool(got), "delivery")
    assert got[0].content_type == "application/json"
    assert json.loads(got[0].data) == {"a": 1}
    assert got[0].decode() == {"a": 1}


@broker_contract("Message.decode(type=T)")
async def _broker_typed(broker: Any) -> None:
    got: list[Any] = []
    await broker.subscribe("t", got.append)
    await broker.publish("t", {"name": "tea", "price": 2.5})
    await _eventually(lambda: bool(got), "delivery")
    assert got[0].decode(Item) == Item("tea", 2.5)
    assert got[0].decode(type=Item) == Item("tea", 2.5)


@broker_contract("broker: a handler's exception goes to the error hook and is logged")
async def _broker_errors(broker: Any) -> None:
    reported: list[BaseException] = []
    ok: list[str] = []
    broker.on_error(lambda exc, *rest: reported.append(exc))

    def bad(msg: Any) -> None:
        raise RuntimeError("boom")

    await broker.subscribe("e", bad)
    await broker.subscribe("e", lambda m: ok.append(m.topic))
    await broker.publish("e", 1)
    await broker.publish("e", 2)
    await _eventually(lambda: len(ok) == 2 and len(reported) == 2, "both messages")
    assert all(isinstance(exc, RuntimeError) for exc in reported)


@broker_contract("broker.subscribe: a bad option name is InvalidArgument with a suggestion")
async def _broker_subscribe_typo(broker: Any) -> None:
    with pytest.raises(InvalidArgument, match="Did you mean 'max_deliver'"):
        await broker.subscribe("t", print, durable="d", max_delivr=3)
    with pytest.raises(InvalidArgument, match="only to durable subscriptions"):
        await broker.subscribe("t", print, max_deliver=3)


@broker_contract("broker: a core message's ack/nack/term/in_progress raise NotSupported")
async def _broker_core_ack(broker: Any) -> None:
    got: list[Any] = []
    await broker.subscribe("core", got.append)
    await broker.publish("core", 1)
    await _eventually(lambda: bool(got), "delivery")
    msg = got[0]
    for call in (msg.ack, msg.nack, msg.term, msg.in_progress):
        with pytest.raises(NotSupported):
            call()


@broker_contract("broker.subscribe(..., durable=NAME): ack, nack, term, id, delivery_count")
async def _broker_durable(broker: Any) -> None:
    got: list[Any] = []

    async def handler(msg: Any) -> None:
        got.append((msg.id, msg.delivery_count, msg.decode()))
        if msg.delivery_count == 1:
            msg.nack(delay=None)
        else:
            msg.in_progress()
            msg.ack()

    sub = await broker.subscribe("d.>", handler, durable="billing")
    await broker.publish("d.x", {"n": 1})
    await _eventually(lambda: len(got) >= 2, "redelivery")
    (first_id, first_count, body), (second_id, second_count, _) = got[:2]
    assert first_id == second_id
    assert first_id is not None
    assert (first_count, second_count, body) == (1, 2, {"n": 1})
    await sub.unsubscribe()


@contract("broker.open_sync: handlers run with no extra call; Message.decode()")
def _broker_sync(tmp: Path) -> None:
    for url in ("memory://", "memory://?impl=python"):
        broker = microstd.broker.open_sync(url)
        seen: list[Any] = []

        def on_order(m: Any, seen: list[Any] = seen) -> None:
            seen.append((m.topic, m.decode()))

        sub = broker.subscribe("orders.*", on_order, queue=None)
        broker.publish("orders.created", {"id": 1}, headers=None, content_type=None)
        assert seen == [("orders.created", {"id": 1})]
        sub.unsubscribe()
        broker.close()


@contextlib.contextmanager
def _logged(level: int) -> Iterator[list[logging.LogRecord]]:
    """The records logged through `logging.getLogger("microstd")` at `level` or above."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level)
    logger = logging.getLogger("microstd")
    logger.addHandler(keep)
    try:
        yield records
    finally:
        logger.removeHandler(keep)


@contract("broker: a handler error is logged at WARNING on logger 'microstd.*'")
async def _broker_logs(tmp: Path) -> None:
    with _logged(logging.WARNING) as records:
        async with microstd.broker.open("memory://") as broker:

            def bad(msg: Any) -> None:
                raise RuntimeError("boom")

            await broker.subscribe("e", bad)
            await broker.publish("e", 1)
            await _eventually(lambda: bool(records), "a log record")
    assert records[0].levelno >= logging.WARNING
    assert records[0].name.startswith("microstd")


# --- sync --------------------------------------------------------------------------------

SYNC_URLS = ["memory://", "memory://?impl=python"]


def sync_contract(name: str) -> Callable[[Callable[[Any], Awaitable[None]]], None]:
    def register(body: Callable[[Any], Awaitable[None]]) -> None:
        for url in SYNC_URLS:

            async def check(tmp: Path, url: str = url) -> None:
                async with microstd.sync.open(url) as locks:
                    await body(locks)

            contract(f"{name} [{url}]")(check)

    return register


@sync_contract("locks.lock(name, ttl, wait) as lease; lease.token increases")
async def _sync_lock(locks: Any) -> None:
    async with locks.lock("invoice/42", ttl=10.0, wait=5.0) as lease:
        first = lease.token
    async with locks.lock("invoice/42", ttl=10.0, wait=5.0) as lease:
        assert lease.token > first


@sync_contract("locks.acquire(name, ttl, wait); wait=0 -> LockTimeout")
async def _sync_acquire(locks: Any) -> None:
    lease = await locks.acquire("n", ttl=10.0, wait=None)
    with pytest.raises(LockTimeout):
        await locks.acquire("n", ttl=10.0, wait=0)
    with pytest.raises(TimeoutError):
        await locks.acquire("n", ttl=10.0, wait=0.01)
    await lease.refresh()
    await lease.release()
    with pytest.raises(LockLost):
        await lease.release()
    with pytest.raises(LockLost):
        await lease.refresh()


@sync_contract("lease.refresh()/release() of an expired or foreign lease -> LockLost")
async def _sync_lost(locks: Any) -> None:
    lease = await locks.acquire("x", ttl=0.05)
    await asyncio.sleep(0.1)
    other = await locks.acquire("x", ttl=10.0, wait=0)
    assert other.token > lease.token
    with pytest.raises(LockLost):
        await lease.refresh()
    with pytest.raises(LockLost):
        await lease.release()
    await other.release()


@sync_contract("locks.elect(name, candidate, ttl); leadership.lost; resign(); leader(name)")
async def _sync_elect(locks: Any) -> None:
    assert await locks.leader("scheduler") is None
    leadership = await locks.elect("scheduler", candidate="node-1", ttl=10.0)
    assert await locks.leader("scheduler") == "node-1"
    assert not leadership.lost.is_set()
    await leadership.resign()
    await asyncio.wait_for(leadership.lost, 5)  # awaitable
    assert await locks.leader("scheduler") is None


@sync_contract("locks.elect returns once elected: a second candidate waits for the first")
async def _sync_elect_waits(locks: Any) -> None:
    first = await locks.elect("job", candidate="a", ttl=10.0)
    second = asyncio.create_task(locks.elect("job", candidate="b", ttl=10.0))
    await asyncio.sleep(0.05)
    assert not second.done()
    await first.resign()
    leadership = await asyncio.wait_for(second, 10)
    assert await locks.leader("job") == "b"
    await leadership.resign()


@sync_contract("async with locks.lock(...) releases on exit")
async def _sync_lock_releases(locks: Any) -> None:
    async with locks.lock("r", ttl=10.0):
        with pytest.raises(LockTimeout):
            await locks.acquire("r", ttl=1.0, wait=0)
    lease = await locks.acquire("r", ttl=1.0, wait=0)
    await lease.release()


@sync_contract("locks: an empty name is InvalidKey")
async def _sync_bad_name(locks: Any) -> None:
    with pytest.raises(InvalidKey, match="lock names must not be empty"):
        await locks.acquire("", ttl=1)
    with pytest.raises(InvalidArgument, match="ttl must be"):
        await locks.acquire("n", ttl=float("inf"))


@contract("microstd.sync.open_sync: lock, acquire, elect, leader")
def _sync_sync(tmp: Path) -> None:
    with microstd.sync.open_sync("memory://") as locks:
        with locks.lock("n", ttl=10.0, wait=5.0) as lease:
            assert isinstance(lease.token, int)
        lease = locks.acquire("n", ttl=10.0, wait=None)
        lease.refresh()
        lease.release()
        leadership = locks.elect("s", candidate="c", ttl=5.0)
        assert locks.leader("s") == "c"
        leadership.resign()
        assert leadership.lost.is_set()


# --- config ------------------------------------------------------------------------------


@dataclasses.dataclass
class Db:
    host: str = "localhost"
    port: int = 5432


@dataclasses.dataclass
class AppConfig:
    db: Db = dataclasses.field(default_factory=Db)
    debug: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)


@contract("config.load(AppConfig, sources=[config.file, config.env(prefix), config.args()])")
def _config_load(tmp: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    path = tmp / "app.toml"
    path.write_text('[db]\nhost = "file-host"\nport = 1\n\ntags = ["a", "b"]\n')
    (tmp / "app.toml").write_text('tags = ["a", "b"]\n[db]\nhost = "file-host"\nport = 1\n')
    old_argv, old_env = sys.argv, os.environ.get("APP_DB__PORT")
    sys.argv = ["prog", "--debug"]
    os.environ["APP_DB__PORT"] = "6432"
    try:
        cfg = config.load(
            AppConfig,
            sources=[config.file(str(path)), config.env(prefix="APP_"), config.args()],
        )
    finally:
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop("APP_DB__PORT", None)
        else:
            os.environ["APP_DB__PORT"] = old_env
    assert cfg.value == AppConfig(db=Db(host="file-host", port=6432), debug=True, tags=["a", "b"])
    assert cfg.get("db.host") == "file-host"
    explained = cfg.explain("db.port")
    assert explained.source.startswith("env")
    assert explained.value == 6432 or explained.value == "6432"
    assert [source for source, _ in explained.overrode]
    assert str(explained)
    assert "env" in str(explained)
    assert "6432" in str(explained)


@contract("config.load(PydanticModel, sources=...)")
def _config_pydantic(tmp: Path) -> None:
    pydantic = pytest.importorskip("pydantic")

    class PDb(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        host: str = "localhost"
        port: int = 5432

    class PApp(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        db: PDb = PDb()

    cfg = config.load(PApp, sources=[config.mapping({"db": {"port": "6432"}})])
    assert isinstance(cfg.value, PApp)
    assert cfg.value.db.port == 6432


@contract("config.load(schema=None, *, sources): a plain dict")
def _config_dict(tmp: Path) -> None:
    cfg = config.load(
        sources=[
            config.mapping({"a": {"b": 1, "l": [1, 2]}}),
            config.mapping({"a": {"c": 2, "l": [3]}}),
        ]
    )
    assert cfg.value == {"a": {"b": 1, "c": 2, "l": [3]}}  # deep merge, lists replaced
    assert isinstance(cfg.value, dict)
    assert config.load(None, sources=[config.mapping({"x": 1})]).value == {"x": 1}


@contract("config.args(argv=None) reads sys.argv[1:]")
def _config_args(tmp: Path) -> None:
    old = sys.argv
    sys.argv = ["prog", "--db.host=h"]
    try:
        assert config.load(sources=[config.args()]).get("db.host") == "h"
    finally:
        sys.argv = old
    assert config.load(sources=[config.args(["--x=1"])]).get("x") in (1, "1")


@contract("config: optional=True source that fails is skipped with a warning")
def _config_optional(tmp: Path) -> None:
    with _logged(logging.WARNING) as records:
        cfg = config.load(
            sources=[
                config.file(str(tmp / "missing.toml"), optional=True),
                config.mapping({"a": 1}),
            ]
        )
    assert cfg.value == {"a": 1}
    assert any("missing.toml" in r.getMessage() for r in records), records


@contract("config: a required source failing raises ConfigError naming it and the line")
def _config_required(tmp: Path) -> None:
    bad = tmp / "bad.toml"
    bad.write_text('a = 1\nb = "unterminated\n')
    with pytest.raises(ConfigError) as info:
        config.load(sources=[config.file(str(bad))])
    assert "bad.toml" in str(info.value), str(info.value)
    assert "line 2" in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        config.load(sources=[config.file(str(tmp / "missing.toml"))])


@contract("config.secrets_dir(path): values print as '**********'")
def _config_secrets(tmp: Path) -> None:
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "db_password").write_text("hunter2\n")
    cfg = config.load(sources=[config.secrets_dir(str(secrets))])
    value = cfg.get("db_password")
    assert str(value) == "**********"
    assert repr(value).count("hunter2") == 0
    assert "hunter2" not in str(cfg.value)
    assert "hunter2" not in str(cfg.explain("db_password"))


@contract("cfg.watch() hot reload and cfg.on_change(path, fn)")
async def _config_watch(tmp: Path) -> None:
    path = tmp / "app.json"
    path.write_text(json.dumps({"db": {"host": "a"}}))
    cfg = config.load(sources=[config.file(str(path))])
    changes: list[tuple[Any, Any]] = []
    cfg.on_change("db.host", lambda old, new: changes.append((old, new)))

    async def first_change() -> Any:
        async for change in cfg.watch():
            return change
        return None

    task = asyncio.create_task(first_change())
    deadline = time.monotonic() + 20
    n = 0
    while not task.done():
        n += 1
        path.write_text(json.dumps({"db": {"host": f"b{n}"}}))
        await asyncio.wait([task], timeout=0.3)
        assert time.monotonic() < deadline, "no reload seen"
    assert task.result() is not None
    assert cfg.get("db.host").startswith("b")
    assert changes
    assert changes[0][0] == "a"


# --- registry, client, server, service ---------------------------------------------------


def _greeter(registry: str | None = None) -> Any:
    svc = (
        microstd.Service("greeter", registry=registry) if registry else microstd.Service("greeter")
    )

    @svc.handler("Greeter.Hello")
    async def hello(req: dict) -> dict:  # type: ignore[type-arg]
        return {"message": f"Hello, {req['name']}!"}

    return svc


@contract("microstd.Service(name); @svc.handler; Client().call(service, endpoint, body)")
async def _service_call(tmp: Path) -> None:
    svc = _greeter()
    async with svc:
        client = microstd.Client()
        try:
            reply = await client.call("greeter", "Greeter.Hello", {"name": "a"})
        finally:
            await client.close()
    assert reply == {"message": "Hello, a!"}


@contract("await microstd.Client().call(...), as DESIGN.md writes it (no close)")
async def _client_snippet(tmp: Path) -> None:
    svc = _greeter()
    async with svc:
        reply = await microstd.Client().call("greeter", "Greeter.Hello", {"name": "a"})
    assert reply == {"message": "Hello, a!"}


@contract("ServiceError(id, code, detail, status) crosses the wire")
async def _service_error(tmp: Path) -> None:
    svc = _greeter()
    async with svc, microstd.Client() as client:
        with pytest.raises(ServiceError) as info:
            await client.call("greeter", "Greeter.Missing", {})
    exc = info.value
    assert (exc.code, exc.status) == (404, "Not Found")
    assert isinstance(exc.id, str)
    assert isinstance(exc.detail, str)
    assert exc.detail
    assert exc.to_dict().keys() == {"id", "code", "detail", "status"}


@contract("errors cross the wire as {id, code, detail, status} (plain HTTP client)")
async def _wire_errors(tmp: Path) -> None:
    svc = _greeter()

    def post(url: str, body: object) -> tuple[int, Any]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    async with svc:
        base = f"http://{svc.node.address}"
        ok = await asyncio.to_thread(post, f"{base}/Greeter.Hello", {"name": "w"})
        missing = await asyncio.to_thread(post, f"{base}/Greeter.Missing", {})
    assert ok == (200, {"message": "Hello, w!"})
    status, error = missing
    assert status == 404
    assert set(error) == {"id", "code", "detail", "status"}
    assert (error["id"], error["code"], error["status"]) == ("greeter", 404, "Not Found")


@contract("@svc.subscriber(pattern, queue=...)")
async def _service_subscriber(tmp: Path) -> None:
    svc = microstd.Service("subscriber-svc")
    got: list[Any] = []

    @svc.subscriber("orders.*", queue="greeter")
    async def on_order(msg: Any) -> None:
        got.append(msg.decode())

    async with svc:
        await svc.broker.publish("orders.created", {"id": 1})
        await _eventually(lambda: bool(got), "the subscriber")
    assert got == [{"id": 1}]


@contract("Service(registry=URL) and Client(registry=URL)")
async def _service_registry(tmp: Path) -> None:
    svc = _greeter(registry="memory://contract-registry")
    async with svc, microstd.Client(registry="memory://contract-registry") as client:
        assert await client.call("greeter", "Greeter.Hello", {"name": "b"}) == {
            "message": "Hello, b!"
        }


@contract("await svc.start() / svc.stop(); address='127.0.0.1:0' registers the real port")
async def _service_lifecycle(tmp: Path) -> None:
    svc = _greeter()
    await svc.start()
    try:
        assert svc.running
        address = svc.node.address
        host, _, port = address.rpartition(":")
        assert host.endswith("127.0.0.1"), address
        assert int(port) > 0, address
        registry = microstd.registry.open("memory://default")
        found = await registry.lookup("greeter")
        assert any(node.address == address for rec in found for node in rec.nodes)
        for path in ("/health/live", "/health/ready"):
            status, _ = await asyncio.to_thread(_http_get, f"http://{address}{path}")
            assert status == 200, path
        # /metrics is opt-in (Service(metrics=True), prometheus-client): off, it says so.
        status, text = await asyncio.to_thread(_http_get, f"http://{address}/metrics")
        assert status == 404, (status, text)
        assert "metrics=True" in text, text
    finally:
        await svc.stop()
    assert not svc.running


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contract("microstd.errors helpers (bad_request, not_found, conflict, ...) keep HTTP meaning")
async def _service_error_mapping(tmp: Path) -> None:
    svc = microstd.Service("mapping")
    raised = {
        "NotFound": (NotFound("x"), 404),
        "Conflict": (Conflict("x"), 409),
        "InvalidArgument": (InvalidArgument("x"), 400),
        "DeadlineExceeded": (errors.DeadlineExceeded("x"), 504),
        "NotSupported": (NotSupported("x"), 501),
        "ConnectionFailed": (errors.ConnectionFailed("x"), 503),
        "bad_request": (errors.bad_request("x"), 400),
        "not_found": (errors.not_found("x"), 404),
        "conflict": (errors.conflict("x"), 409),
    }
    for name, (exc, _code) in raised.items():

        async def raise_it(req: Any, exc: BaseException = exc) -> None:
            raise exc

        svc.add_handler(f"M.{name}", raise_it)
    async with svc, microstd.Client() as client:
        for name, (_exc, code) in raised.items():
            with pytest.raises(ServiceError) as info:
                await client.call("mapping", f"M.{name}", {})
            assert info.value.code == code, name
            assert info.value.status == errors.reason_phrase(code)


@contract("microstd.SyncClient().call(...)")
async def _sync_client(tmp: Path) -> None:
    svc = _greeter(registry="memory://contract-sync-client")
    async with svc:

        def call() -> Any:
            with microstd.SyncClient(registry="memory://contract-sync-client") as client:
                return client.call("greeter", "Greeter.Hello", {"name": "s"})

        assert await asyncio.to_thread(call) == {"message": "Hello, s!"}


@contract("Client().stream(...): streaming calls")
async def _stream_call(tmp: Path) -> None:
    svc = microstd.Service("counter")

    @svc.handler("Counter.Count")
    async def count(req: dict) -> Any:  # type: ignore[type-arg]
        for i in range(req["n"]):
            yield {"i": i}

    async with svc, microstd.Client() as client:
        got = [item async for item in client.stream("counter", "Counter.Count", {"n": 3})]
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]


@contract("Client.call(..., type=T)")
async def _typed_call(tmp: Path) -> None:
    svc = microstd.Service("typed")

    @svc.handler("Typed.Get")
    async def get(req: dict) -> dict:  # type: ignore[type-arg]
        return {"name": "tea", "price": 2.5}

    async with svc, microstd.Client() as client:
        assert await client.call("typed", "Typed.Get", {}, type=Item) == Item("tea", 2.5)


@contract("microstd.registry.open('memory://'): register, lookup, watch")
async def _registry(tmp: Path) -> None:
    from microstd.registry import Node, ServiceRecord

    async with microstd.registry.open("memory://") as registry:
        record = ServiceRecord(name="svc", nodes=[Node(id="n1", address="127.0.0.1:1")])
        await registry.register(record, ttl=10)
        found = await registry.lookup("svc")
        assert [n.id for rec in found for n in rec.nodes] == ["n1"]
        await registry.deregister(record)
        with pytest.raises(NotFound):
            await registry.lookup("svc")
        events: list[Any] = []

        async def watch() -> None:
            async for ev in registry.watch("svc"):
                events.append(ev)
                return

        task = asyncio.create_task(watch())
        n = 0
        while not task.done():
            n += 1  # a new node each time: a registration that changes nothing is no event
            await registry.register(
                ServiceRecord(name="svc", nodes=[Node(id=f"n{n}", address="127.0.0.1:1")]), ttl=10
            )
            await asyncio.wait([task], timeout=0.05)
        assert events


SERVICE_SCRIPT = """
import asyncio, sys
import microstd

svc = microstd.Service("runner")

@svc.handler("Runner.Ping")
async def ping(req: dict) -> dict:
    return {"pong": True}

async def announce() -> None:
    while not svc.running:
        await asyncio.sleep(0.01)
    print("ready", svc.node.address, flush=True)

_start = svc.start
async def start() -> None:
    await _start()
    asyncio.get_running_loop().create_task(announce())
svc.start = start  # type: ignore[method-assign]
svc.run()
print("stopped", flush=True)
"""


def _service_run_check(sig: signal.Signals) -> Check:
    def check(tmp: Path) -> None:
        _service_run(tmp, sig)

    return check


for _sig in (signal.SIGTERM, signal.SIGINT):
    contract(f"svc.run(): serves until {_sig.name}, then stops gracefully (exit 0)")(
        _service_run_check(_sig)
    )


def _service_run(tmp: Path, sig: signal.Signals) -> None:
    script = tmp / "runner.py"
    script.write_text(SERVICE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out


# --- the microstd command ----------------------------------------------------------------

COMMANDS = ["bench", "services", "call", "publish", "run", "streams"]


@contract("microstd --help lists every command")
def _cli_help(tmp: Path) -> None:
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout, command


@contract("microstd --version")
def _cli_version(tmp: Path) -> None:
    done = _cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith(f"microstd {microstd.__version__} (")


def _cli_command_help(command: str) -> Check:
    def check(tmp: Path) -> None:
        done = _cli(command, "--help")
        assert done.returncode == 0, done.stderr
        assert f"microstd {command}" in done.stdout

    return check


for _command in COMMANDS:
    contract(f"microstd {_command} --help")(_cli_command_help(_command))


@contract("microstd services / call / publish without a URL: exit 2, saying why")
def _cli_no_url(tmp: Path) -> None:
    for args in (
        ["services"],
        ["call", "greeter", "Greeter.Hello", "{}"],
        ["publish", "orders.created", "{}"],
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "MICROSTD_" in done.stderr, done.stderr


# --- errors ------------------------------------------------------------------------------

BUILTIN_BASES = {
    "NotFound": KeyError,
    "LockTimeout": TimeoutError,
    "DecodeError": ValueError,
    "EncodeError": (TypeError, ValueError),
    "InvalidKey": ValueError,
    "InvalidArgument": (TypeError, ValueError),
    "UnknownBackend": ValueError,
    "UnknownContentType": LookupError,
    "NotSupported": NotImplementedError,
    "DeadlineExceeded": TimeoutError,
    "ConnectionFailed": ConnectionError,
    "ConfigError": ValueError,
    "ValidationError": DecodeError,
    "MissingDependency": ImportError,
}


def _error_class_check(name: str) -> Check:
    def check(tmp: Path) -> None:
        cls = getattr(errors, name)
        assert issubclass(cls, MicrostdError)
        assert name in errors.__all__
        base = BUILTIN_BASES.get(name)
        if base is not None:
            assert issubclass(cls, base), (name, base)

    return check


ERROR_NAMES = [
    "MicrostdError",
    "EncodeError",
    "DecodeError",
    "ValidationError",
    "UnknownContentType",
    "UnknownBackend",
    "NotFound",
    "Conflict",
    "InvalidKey",
    "InvalidArgument",
    "NotSupported",
    "Closed",
    "ConnectionFailed",
    "LockTimeout",
    "LockLost",
    "ConfigError",
    "DeadlineExceeded",
    "ServiceError",
    "MissingDependency",
]
for _name in ERROR_NAMES:
    contract(f"microstd.errors.{_name}")(_error_class_check(_name))


@contract("ServiceError(id, code, detail): status derived from code")
def _service_error_status(tmp: Path) -> None:
    exc = ServiceError("svc", 409, "taken")
    assert (exc.id, exc.code, exc.detail, exc.status) == ("svc", 409, "taken", "Conflict")
    for helper, code in (
        (errors.bad_request, 400),
        (errors.not_found, 404),
        (errors.conflict, 409),
        (errors.unavailable, 503),
        (errors.gateway_timeout, 504),
        (errors.not_implemented, 501),
    ):
        made = helper("d")
        assert isinstance(made, ServiceError)
        assert made.code == code


# --- Wave 2 operations, kit, guarantees ---------------------------------------------------


@contract("microstd.testing: pytest --microstd-registry=URL runs the contract suite")
def _testing_kit(tmp: Path) -> None:
    from importlib.metadata import entry_points

    installed = any(ep.value == "microstd.testing.plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "microstd.testing.plugin"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *plugin,
            "--microstd-registry=memory://{unique}",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


@contract("docs/guarantees.md and tests/faults/ exist")
def _guarantees(tmp: Path) -> None:
    assert (ROOT / "docs" / "guarantees.md").is_file()
    assert any((ROOT / "tests" / "faults").glob("test_*.py"))


@contract("config sources named in DESIGN.md: redis, etcd, nats, consul, vault, postgres")
def _config_sources(tmp: Path) -> None:
    for name in (
        "file",
        "env",
        "args",
        "mapping",
        "secrets_dir",
        "redis",
        "etcd",
        "nats",
        "consul",
        "vault",
        "postgres",
    ):
        assert callable(getattr(config, name)), name


# --- README and --help agree with DESIGN.md ----------------------------------------------


@contract("README names every area's open() and the DESIGN.md schemes")
def _readme_agrees(tmp: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in (
        "microstd.store.open(",
        "microstd.store.open_sync(",
        "microstd.broker.open_sync(",
        "microstd.sync.open_sync(",
        "config.load(",
        "microstd.Service(",
        "microstd.Client()",
        "memory://",
        "file://",
        "redis://",
        "nats://",
        "s3://",
        "etcd://",
        "amqp://",
        "postgresql://",
    ):
        assert needle in readme, needle


# --- `microstd run` / services / call / publish across processes (needs a shared registry) ---

APP = """
import microstd

svc = microstd.Service("{name}")


@svc.handler("Greeter.Hello")
async def hello(req: dict) -> dict:
    return {{"message": "Hello, " + req["name"] + "!"}}


@svc.subscriber("{name}.*")
async def on_event(msg) -> None:
    print("got", msg.decode(), flush=True)
"""


@pytest.mark.parametrize("given", ["environment", "flags"])
def test_microstd_run_services_call_publish(redis_url: str, tmp_path: Path, given: str) -> None:
    """README/DESIGN: `microstd run MODULE:SERVICE` serves, `services` / `call` / `publish`
    reach it, SIGTERM stops it gracefully, and it logs its start and stop steps.

    The service's code names no registry or broker (DESIGN.md's `Service("greeter")`):
    `microstd run` gives it the ones in `$MICROSTD_REGISTRY` / `$MICROSTD_BROKER`, or
    `--registry` / `--broker`, the same the other commands read."""
    name = f"contract{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.py").write_text(APP.format(name=name))
    env = _env()
    env["MICROSTD_REGISTRY"] = redis_url
    env["MICROSTD_BROKER"] = redis_url
    run_env = _env()
    urls = ["--registry", redis_url, "--broker", redis_url]
    if given == "environment":
        run_env, urls = env, []
    proc = subprocess.Popen(
        [sys.executable, "-m", "microstd", "run", "app:svc", "--log-format", "json", *urls],
        cwd=tmp_path,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            if "ready" in line:
                break
        assert any("ready" in line for line in lines), "".join(lines)
        record = json.loads(lines[-1])
        assert record["logger"] == "microstd.service"
        assert record["level"] == "INFO"

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "microstd", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )

        listed = cli("services", "--json")
        assert listed.returncode == 0, listed.stderr
        assert name in listed.stdout
        called = cli("call", name, "Greeter.Hello", '{"name": "Ada"}')
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout) == {"message": "Hello, Ada!"}
        missing = cli("call", name, "Greeter.Missing", "{}")
        assert missing.returncode == 1
        assert json.loads(missing.stderr)["code"] == 404
        published = cli("publish", f"{name}.created", '{"id": 1}')
        assert published.returncode == 0, published.stderr
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "got {'id': 1}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stop" in err.lower() or "deregister" in err.lower(), err


def test_service_and_client_over_a_nats_transport(nats_url: str) -> None:
    """DESIGN.md wave 2: `transport="nats://..."` beside HTTP, for Service and Client."""

    async def main() -> None:
        svc = microstd.Service(f"nt{uuid.uuid4().hex[:8]}", transport=nats_url)

        @svc.handler("Greeter.Hello")
        async def hello(req: dict) -> dict:  # type: ignore[type-arg]
            return {"message": f"Hello, {req['name']}!"}

        async with svc, microstd.Client(transport=nats_url) as client:
            reply = await client.call(svc.name, "Greeter.Hello", {"name": "n"})
            assert reply == {"message": "Hello, n!"}
            with pytest.raises(ServiceError) as info:
                await client.call(svc.name, "Greeter.Missing", {})
            assert info.value.code == 404

    asyncio.run(asyncio.wait_for(main(), 60))


# --- signatures: every backend's methods take DESIGN.md's parameters and defaults ---------

#: method -> the parameters DESIGN.md shows, with their defaults (inspect.Parameter.empty: none).
_E = inspect.Parameter.empty
SIGNATURES: dict[str, dict[str, dict[str, object]]] = {
    "store": {
        "write": {
            "key": _E,
            "value": _E,
            "ttl": None,
            "metadata": None,
            "if_revision": None,
            "if_absent": False,
        },
        "read": {"key": _E},
        "read_many": {"keys": _E},
        "list": {"prefix": "", "suffix": "", "limit": None, "offset": 0},
        "exists": {"key": _E},
        "delete": {"key": _E},
        "watch": {"prefix": ""},
    },
    "broker": {
        "subscribe": {"pattern": _E, "handler": _E, "queue": None, "durable": None},
        "publish": {"topic": _E, "body": _E, "headers": None, "content_type": None},
    },
    "sync": {
        "lock": {"name": _E, "ttl": 10.0, "wait": None},
        "acquire": {"name": _E, "ttl": 10.0, "wait": None},
        "elect": {"name": _E, "candidate": _E, "ttl": 10.0},
        "leader": {"name": _E},
    },
}
KEYWORD_ONLY = {"ttl", "metadata", "if_revision", "if_absent", "durable"}


def _backend_classes(area: str) -> list[tuple[str, Any]]:
    import importlib

    module = importlib.import_module(f"microstd.{area}")
    found: dict[str, Any] = {}
    for scheme, target in module._BUILTINS.items():
        if scheme == "memory":
            continue
        module_name, _, attr = target.partition(":")
        found.setdefault(target, (scheme, getattr(importlib.import_module(module_name), attr)))
    handles = [
        ("memory", type(module.open("memory://"))),
        ("memory?impl=python", type(module.open("memory://?impl=python"))),
        ("memory sync", type(module.open_sync("memory://"))),
        ("memory?impl=python sync", type(module.open_sync("memory://?impl=python"))),
    ]
    return handles + list(found.values())


def _signature_check(area: str) -> Check:
    def check(tmp: Path) -> None:
        wrong: list[str] = []
        for where, cls in _backend_classes(area):
            for method, expected in SIGNATURES[area].items():
                params = inspect.signature(getattr(cls, method)).parameters
                for name, default in expected.items():
                    param = params.get(name)
                    if param is None:
                        wrong.append(f"{where} {cls.__name__}.{method}: no {name}")
                    elif param.default != default and not (
                        default is not _E and param.default is _E
                    ):
                        wrong.append(
                            f"{where} {cls.__name__}.{method}: {name}={param.default!r},"
                            f" DESIGN.md shows {default!r}"
                        )
                    elif (
                        name in KEYWORD_ONLY
                        and area == "store"
                        and param.kind != param.KEYWORD_ONLY
                    ):
                        wrong.append(f"{where} {cls.__name__}.{method}: {name} is not keyword-only")
        assert not wrong, "\n".join(wrong)

    return check


for _area in SIGNATURES:
    contract(f"microstd.{_area}: every backend's method signatures match DESIGN.md")(
        _signature_check(_area)
    )


# --- the test --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CHECKS))
def test_contract_name(name: str, tmp_path: Path) -> None:
    result = CHECKS[name](tmp_path)
    if inspect.isawaitable(result):
        asyncio.run(_bounded(result))


async def _bounded(awaitable: Awaitable[None]) -> None:
    await asyncio.wait_for(awaitable, 60)
