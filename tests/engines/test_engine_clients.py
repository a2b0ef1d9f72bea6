"""The engine client modules: URLs, timeouts, redaction, error mapping, sharing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import nats.errors as nerr
import pytest
import redis.exceptions as rexc

from _servers import free_port
from microstd._engines import etcd, nats, redis
from microstd._engines._common import Shared, Timeouts
from microstd.errors import ConnectionFailed, MicrostdError

# -- URLs and options ---------------------------------------------------------


def test_redis_url_keeps_client_options_and_takes_its_own() -> None:
    endpoint, area = redis.RedisEndpoint.from_url(
        "redis://user:s3cret@127.0.0.1:6390/2?prefix=p:&timeout=2&ssl_cert_reqs=none",
        {"connect_timeout": 0.5, "codec": "application/json"},
        area=("prefix",),
    )
    assert endpoint.url == "redis://user:s3cret@127.0.0.1:6390/2?ssl_cert_reqs=none"
    assert "s3cret" not in endpoint.redacted
    assert "s3cret" not in repr(endpoint)
    assert endpoint.timeouts == Timeouts(connect=0.5, request=2.0, ping_interval=10.0)
    assert area == {"prefix": "p:", "codec": "application/json"}


def test_redis_socket_timeout_is_another_name_for_timeout() -> None:
    endpoint, _ = redis.RedisEndpoint.from_url("redis://h/0?socket_timeout=3")
    assert endpoint.timeouts.request == 3.0
    endpoint, _ = redis.RedisEndpoint.from_url("redis://h/0?socket_timeout=3&timeout=4")
    assert endpoint.timeouts.request == 4.0


def test_defaults_are_the_documented_ones() -> None:
    for endpoint in (
        redis.RedisEndpoint.from_url("redis://h/0")[0],
        nats.NatsEndpoint.from_url("nats://h:4222")[0],
        etcd.EtcdEndpoint.from_url("etcd://h")[0],
    ):
        assert endpoint.timeouts == Timeouts(connect=5.0, request=5.0, ping_interval=10.0)
    endpoint = nats.NatsEndpoint.from_url("nats://h:4222")[0]
    assert (endpoint.max_reconnect_attempts, endpoint.reconnect_time_wait) == (-1, 0.5)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", True, None])
def test_bad_timeouts_are_refused(value: object) -> None:
    if value is None:  # None means "the default"
        assert redis.RedisEndpoint.from_url("redis://h/0", {"timeout": None})[0].timeouts
        return
    with pytest.raises((ValueError, TypeError), match="timeout"):
        redis.RedisEndpoint.from_url("redis://h/0", {"timeout": value})


@pytest.mark.parametrize("value", ["0", "-2", "x", True])
def test_bad_reconnect_limits_are_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError), match="max_reconnect_attempts"):
        nats.NatsEndpoint.from_url("nats://h:4222", {"max_reconnect_attempts": value})


def test_nats_url_redacts_tokens_and_passwords() -> None:
    for url in ("nats://T0KEN@127.0.0.1:4222", "nats://u:s3cret@127.0.0.1:4222?bucket=b"):
        endpoint, _area = nats.NatsEndpoint.from_url(url, {"timeout": 1})
        assert "T0KEN" not in repr(endpoint)
        assert "s3cret" not in repr(endpoint)
        assert endpoint.servers == url.split("?")[0]
    assert nats.NatsEndpoint.from_url("nats://h:1?bucket=b&x=1")[1] == {"bucket": "b", "x": "1"}


def test_etcd_url_forms() -> None:
    cases = {
        "etcd://127.0.0.1:2390": "http://127.0.0.1:2390",
        "etcds://example.test": "https://example.test:2379",
        "etcd://h:1?tls=1": "https://h:1",
        "http://h:2": "http://h:2",
        "etcd://[::1]:3": "http://[::1]:3",
    }
    for url, base in cases.items():
        assert etcd.EtcdEndpoint.from_url(url)[0].base == base
    endpoint, area = etcd.EtcdEndpoint.from_url("etcd://root:s3cret@h:1?prefix=/a/&timeout=2")
    assert (endpoint.username, endpoint.password) == ("root", "s3cret")
    assert "s3cret" not in repr(endpoint)
    assert "s3cret" not in endpoint.redacted
    assert area == {"prefix": "/a/"}
    with pytest.raises(ValueError, match="not an etcd URL"):
        etcd.EtcdEndpoint.from_url("redis://h:1")


def test_etcd_urls_name_clusters() -> None:
    """A host list (or a list of whole URLs) names the members; credentials and
    options apply to all of them."""
    for url in (
        "etcd://root:s3cret@a:1,b,[::1]:3?timeout=2",
        "etcd://root:s3cret@a:1,etcd://b,etcd://[::1]:3?timeout=2",
    ):
        endpoint, area = etcd.EtcdEndpoint.from_url(url)
        assert endpoint.members == ("http://a:1", "http://b:2379", "http://[::1]:3")
        assert endpoint.base == "http://a:1"
        assert (endpoint.username, endpoint.password, endpoint.timeouts.request) == (
            "root",
            "s3cret",
            2,
        )
        assert endpoint.redacted == "http://root:***@a:1,b:2379,[::1]:3"
        assert endpoint.randomize
        assert area == {}
    assert etcd.EtcdEndpoint.from_url("etcds://a,b")[0].members == (
        "https://a:2379",
        "https://b:2379",
    )
    assert not etcd.EtcdEndpoint.from_url("etcd://a,b?randomize=0")[0].randomize
    assert etcd.EtcdEndpoint.from_url("etcd://a")[0].members == ("http://a:2379",)


async def test_etcd_requests_move_on_to_a_member_that_answers(etcd_url: str) -> None:
    """First listed: a refused port, then a listener that never answers, then the
    real server. A request that certainly was not applied (refused) goes on to the
    next member; one that timed out (perhaps applied) is sent on only when
    idempotent; the client then stays with the member that answered."""
    live = etcd_url.split("://", 1)[1]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        members = f"127.0.0.1:{free_port()},127.0.0.1:{silent.getsockname()[1]},{live}"
        options = {"connect_timeout": 0.5, "timeout": 0.5, "randomize": "0"}
        e, _ = etcd.EtcdEndpoint.from_url(f"etcd://{members}", options)
        client = await etcd.acquire(e)
        try:
            put = {"key": etcd.b64("ha/x"), "value": etcd.b64("1")}
            # Refused: surely unsent, so sent on; the silent one then takes the timeout.
            with pytest.raises(ConnectionFailed, match="unreachable"):
                await asyncio.wait_for(client.call("kv/put", put), 10)
            assert client.member == f"http://{live}"  # the silent member was left
            await client.call("kv/put", put)  # not idempotent, not ambiguous: it worked
        finally:
            await etcd.release(client)
        # Another client, from the refused member on: an idempotent read goes round.
        e, _ = etcd.EtcdEndpoint.from_url(f"etcd://{members}", {**options, "timeout": 0.6})
        client = await etcd.acquire(e)
        try:
            read = client.call("kv/range", {"key": put["key"]}, idempotent=True)
            got = await asyncio.wait_for(read, 10)
            assert etcd.kvs_of(got)[0]["value"] == put["value"]
            assert client.member == f"http://{live}"
        finally:
            await etcd.release(client)


async def test_etcd_a_safe_request_leaves_a_silent_member_after_its_attempt_time(
    etcd_url: str,
) -> None:
    """A member that accepts and never answers (a frozen process), listed first,
    with a request time of a minute: a request safe to repeat is abandoned there
    after `attempt_timeout` and answered by the next member, long before the
    minute is out; the client then stays with that member."""
    live = etcd_url.split("://", 1)[1]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        members = f"127.0.0.1:{silent.getsockname()[1]},{live}"
        query = "timeout=60&attempt_timeout=0.3&randomize=0"
        e, _ = etcd.EtcdEndpoint.from_url(f"etcd://{members}?{query}")
        assert e.attempt == 0.3
        client = await etcd.acquire(e)
        try:
            read = client.call("kv/range", {"key": etcd.b64("ha/none")}, idempotent=True)
            await asyncio.wait_for(read, 10)
            assert client.member == f"http://{live}"
        finally:
            await etcd.release(client)


def test_etcd_attempt_timeout_defaults_to_a_third_of_the_timeout() -> None:
    assert etcd.EtcdEndpoint.from_url("etcd://a,b?timeout=3")[0].attempt == 1.0
    assert etcd.EtcdEndpoint.from_url("etcd://a,b", {"attempt_timeout": 2})[0].attempt == 2.0
    with pytest.raises(ValueError, match="attempt_timeout"):
        etcd.EtcdEndpoint.from_url("etcd://a,b?attempt_timeout=0")


async def test_etcd_a_lease_grant_sent_twice_grants_one_lease(
    etcd_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client picks the lease ID, so a grant whose reply was lost and its
    retry grant the same lease: the second is refused by etcd ("already
    exists") and `grant_lease` answers the lease the first one granted."""
    e, _ = etcd.EtcdEndpoint.from_url(etcd_url)
    client = await etcd.acquire(e)
    try:
        first = await client.grant_lease(5)
        monkeypatch.setattr(etcd.random, "randrange", lambda *_: int(first[0]))
        again = await client.grant_lease(5)
        assert again[0] == first[0]
        assert 0 < again[1] <= 5
        await client.call("lease/revoke", {"ID": first[0]}, idempotent=True)
    finally:
        await etcd.release(client)


# -- error mapping --------------------------------------------------------------


def test_redis_errors_map_to_microstd_errors() -> None:
    endpoint, _ = redis.RedisEndpoint.from_url("redis://u:s3cret@h/0")
    cases: list[tuple[Exception, type[Exception], str]] = [
        (rexc.ConnectionError("refused"), ConnectionFailed, "unreachable"),
        (rexc.TimeoutError("Timeout reading"), ConnectionFailed, "unreachable"),
        (OSError("no route"), ConnectionFailed, "unreachable"),
        (rexc.AuthenticationError("bad"), ConnectionFailed, "credentials"),
        (rexc.BusyLoadingError("LOADING"), ConnectionFailed, "unreachable"),
        (rexc.ReadOnlyError("READONLY You can't write"), ConnectionFailed, "cannot serve"),
        (rexc.ResponseError("WRONGTYPE Operation"), MicrostdError, "answered an error"),
    ]
    for raised, expected, words in cases:
        with pytest.raises(expected, match=words) as info, redis.errors(endpoint, "store read"):
            raise raised
        assert info.value.__cause__ is raised
        assert "store read" in str(info.value)
        assert "s3cret" not in str(info.value)
        if expected is MicrostdError:
            assert not isinstance(info.value, ConnectionFailed)


def test_nats_errors_map_to_microstd_errors() -> None:
    endpoint, _ = nats.NatsEndpoint.from_url("nats://u:s3cret@h:1")
    for raised in (
        nerr.TimeoutError(),
        nerr.NoRespondersError(),
        nerr.OutboundBufferLimitError(),
        nerr.ConnectionClosedError(),
        asyncio.TimeoutError(),
    ):
        with pytest.raises(ConnectionFailed) as info, nats.errors(endpoint, "publish"):
            raise raised
        assert info.value.__cause__ is raised
        assert "s3cret" not in str(info.value)
    with pytest.raises(MicrostdError) as other, nats.errors(endpoint, "publish"):
        raise nerr.MaxPayloadError()
    assert not isinstance(other.value, ConnectionFailed)


def test_cancellation_passes_through_every_mapping() -> None:
    endpoints = [
        (redis.errors, redis.RedisEndpoint.from_url("redis://h/0")[0]),
        (nats.errors, nats.NatsEndpoint.from_url("nats://h:1")[0]),
        (etcd.errors, etcd.EtcdEndpoint.from_url("etcd://h:1")[0]),
    ]
    for errors, endpoint in endpoints:
        with pytest.raises(asyncio.CancelledError), errors(endpoint, "x"):  # type: ignore[operator]
            raise asyncio.CancelledError


# -- connecting to nothing ------------------------------------------------------


async def test_unreachable_servers_fail_within_the_connect_timeout() -> None:
    port = free_port()
    r, _ = redis.RedisEndpoint.from_url(f"redis://127.0.0.1:{port}/0?connect_timeout=0.5")
    conn = await redis.acquire(r)
    try:
        with pytest.raises(ConnectionFailed, match="unreachable"):
            await asyncio.wait_for(conn.ping(), 10)
    finally:
        await redis.release(conn)
    n, _ = nats.NatsEndpoint.from_url(f"nats://127.0.0.1:{port}?connect_timeout=0.5")
    with pytest.raises(ConnectionFailed, match="unreachable"):
        await asyncio.wait_for(nats.acquire(n), 10)
    e, _ = etcd.EtcdEndpoint.from_url(f"etcd://127.0.0.1:{port}?connect_timeout=0.5")
    client = await etcd.acquire(e)
    try:
        with pytest.raises(ConnectionFailed, match="unreachable"):
            await asyncio.wait_for(client.call("maintenance/status", {}), 10)
    finally:
        await etcd.release(client)


async def test_a_silent_server_fails_within_the_request_timeout() -> None:
    """A listener that accepts and never answers: every engine gives up in time."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fast = {"connect_timeout": 0.5, "timeout": 0.5}
        r, _ = redis.RedisEndpoint.from_url(f"redis://127.0.0.1:{port}/0", fast)
        conn = await redis.acquire(r)
        try:
            with pytest.raises(ConnectionFailed):
                await asyncio.wait_for(conn.ping(), 10)
        finally:
            await redis.release(conn)
        n, _ = nats.NatsEndpoint.from_url(f"nats://127.0.0.1:{port}", fast)
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(nats.acquire(n), 10)
        e, _ = etcd.EtcdEndpoint.from_url(f"etcd://127.0.0.1:{port}", fast)
        client = await etcd.acquire(e)
        try:
            with pytest.raises(ConnectionFailed):
                await asyncio.wait_for(client.call("kv/range", {"key": "eA=="}), 10)
        finally:
            await etcd.release(client)


# -- sharing ----------------------------------------------------------------------


async def test_shared_connections_are_reference_counted_per_loop() -> None:
    opened: list[int] = []
    closed: list[int] = []
    shared: Shared[int] = Shared()

    async def open() -> int:
        opened.append(len(opened))
        await asyncio.sleep(0.01)
        return opened[-1]

    async def close(conn: int) -> None:
        closed.append(conn)

    first, second = await asyncio.gather(shared.acquire("k", open), shared.acquire("k", open))
    assert first == second == 0
    assert opened == [0]
    assert shared.count("k") == 2
    await shared.release("k", close)
    assert closed == []
    await shared.release("k", close)
    assert closed == [0]
    assert shared.count("k") == 0
    assert await shared.acquire("k", open) == 1  # opened again after the last release
    await shared.release("k", close)


async def test_a_failed_opening_is_not_cached() -> None:
    shared: Shared[int] = Shared()
    attempts: list[int] = []

    async def open() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionFailed("down")
        return 7

    with pytest.raises(ConnectionFailed):
        await shared.acquire("k", open)
    assert shared.count("k") == 0
    assert await shared.acquire("k", open) == 7


async def test_stores_on_one_server_share_one_redis_pool(redis_url: str) -> None:
    import microstd.store

    endpoint, _ = redis.RedisEndpoint.from_url(redis_url)
    async with microstd.store.open(redis_url) as a, microstd.store.open(redis_url) as b:
        await a.write("shared", 1)
        assert (await b.read("shared")).value == 1
        assert redis._shared.count(endpoint) == 2
        await a.delete("shared")
    assert redis._shared.count(endpoint) == 0


def test_our_own_errors_pass_through_every_mapping_unchanged() -> None:
    """`ConnectionFailed` is also an `OSError`: raised inside a mapping, it is not
    wrapped a second time."""
    endpoints = [
        (redis.errors, redis.RedisEndpoint.from_url("redis://h/0")[0]),
        (nats.errors, nats.NatsEndpoint.from_url("nats://h:1")[0]),
        (etcd.errors, etcd.EtcdEndpoint.from_url("etcd://h:1")[0]),
    ]
    for errors, endpoint in endpoints:
        original = ConnectionFailed("already mapped")
        with pytest.raises(ConnectionFailed) as info, errors(endpoint, "x"):  # type: ignore[operator]
            raise original
        assert info.value is original


def test_etcd_tells_an_unsent_request_on_an_aiohttp_without_connect_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp < 3.10 has no ConnectionTimeoutError: a timeout there may follow an
    applied request, so it is not "unsent" (and asking must not raise)."""
    import aiohttp

    if hasattr(aiohttp, "ConnectionTimeoutError"):
        sent = ConnectionFailed("connect timeout")
        sent.__cause__ = aiohttp.ConnectionTimeoutError()
        assert etcd._unsent(sent)
        monkeypatch.delattr(aiohttp, "ConnectionTimeoutError")
    ambiguous = ConnectionFailed("timeout")
    ambiguous.__cause__ = aiohttp.ServerTimeoutError()
    assert not etcd._unsent(ambiguous)


async def test_an_etcd_member_that_drops_each_watch_once_created_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cluster whose members accept a watch (`created`) and end the stream at
    once: the watch backs off and fails with ConnectionFailed, not re-created for ever."""
    e, _ = etcd.EtcdEndpoint.from_url("etcd://h1:1,h2:1,h3:1?connect_timeout=0.2&timeout=0.3")
    client = await etcd.acquire(e)
    opened: list[str] = []

    async def created_then_dropped(
        base: str, request: object, what: str, bound: float | None = None
    ) -> AsyncIterator[dict[str, object]]:
        opened.append(base)
        await asyncio.sleep(0)  # a real stream waits on the network: cancellable
        yield {"created": True}
        raise etcd.EtcdStreamEnded(f"{what}: {base} ended the watch stream")

    monkeypatch.setattr(client, "_watch_member", created_then_dropped)

    async def consume() -> None:
        async for _ in client.watch({"key": etcd.b64("k"), "start_revision": "7"}):
            pass

    try:
        with pytest.raises(ConnectionFailed, match="ended the watch stream"):
            await asyncio.wait_for(consume(), 30)
        assert len(set(opened)) == 3  # every member was tried
    finally:
        await etcd.release(client)
