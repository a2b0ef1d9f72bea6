"""Cluster URLs in the engine client modules: server lists, replicas, their errors.

The failover itself is tested against real clusters in tests/faults/cluster/.
"""

from __future__ import annotations

import nats.js.errors as jerr
import pytest

import microstd.store
from _servers import ServerProcess, free_port
from microstd._engines import nats
from microstd.errors import ConnectionFailed, InvalidArgument

# -- NATS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "nats://u:s3cret@a:4222,nats://u:s3cret@b:4223",
        "nats://u:s3cret@a:4222,b:4223",
    ],
)
def test_nats_takes_a_server_list_in_both_forms(url: str) -> None:
    endpoint, rest = nats.NatsEndpoint.from_url(url + "?bucket=x&timeout=2")
    assert endpoint.server_list == ("nats://u:s3cret@a:4222", "nats://u:s3cret@b:4223")
    assert endpoint.timeouts.request == 2.0
    assert rest == {"bucket": "x"}
    assert "s3cret" not in endpoint.redacted
    assert "s3cret" not in repr(endpoint)


@pytest.mark.parametrize(("given", "expected"), [(1, 1), ("3", 3), (5, 5)])
def test_replicas_option(given: object, expected: int) -> None:
    assert nats.replicas_option(given) == expected


@pytest.mark.parametrize("bad", [0, 6, -1, "three", 2.5, True, None])
def test_bad_replicas_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="replicas"):
        nats.replicas_option(bad)


def test_a_store_refuses_bad_replicas_when_opened() -> None:
    with pytest.raises(InvalidArgument, match="replicas"):
        microstd.store.open("nats://127.0.0.1:1?bucket=x&replicas=9")


def test_a_broker_takes_replicas_for_its_streams() -> None:
    import microstd.broker

    assert microstd.broker.open("nats://127.0.0.1:1?replicas=3").replicas == 3  # type: ignore[attr-defined]
    assert microstd.broker.open("nats://127.0.0.1:1").replicas == 1  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="replicas"):
        microstd.broker.open("nats://127.0.0.1:1", replicas=0)


def test_a_jetstream_publish_nobody_answered_is_connection_failed() -> None:
    """On a cluster electing a stream leader a JetStream publish gets no answer at
    all ("no response from stream"): unavailable, like a timeout, not a bug."""
    endpoint, _ = nats.NatsEndpoint.from_url("nats://a:1,nats://b:2")
    raised = jerr.NoStreamResponseError()
    with pytest.raises(ConnectionFailed) as info, nats.errors(endpoint, "store write"):
        raise raised
    assert info.value.__cause__ is raised


@pytest.mark.services
async def test_a_server_list_connects_past_a_dead_server(nats_proc: ServerProcess) -> None:
    """The first server listed is down: the client connects to the next one."""
    dead = free_port()
    url = f"nats://127.0.0.1:{dead},nats://127.0.0.1:{nats_proc.port}?bucket=serverlist"
    for _ in range(3):  # nats-py shuffles the list: try it more than once
        async with microstd.store.open(url, connect_timeout=1.0) as store:
            await store.write("k", 1)
            assert (await store.read("k")).value == 1
            assert store._conn is not None  # type: ignore[attr-defined]
            assert store._conn.server == f"127.0.0.1:{nats_proc.port}"  # type: ignore[attr-defined]


# -- engines that take one server ---------------------------------------------


@pytest.mark.parametrize(
    ("area", "url"),
    [
        ("store", "redis://127.0.0.1:1,127.0.0.1:2/0"),
        ("broker", "redis://127.0.0.1:1,127.0.0.1:2/0"),
        ("sync", "redis://127.0.0.1:1,127.0.0.1:2/0"),
        ("broker", "amqp://127.0.0.1:1,127.0.0.1:2/"),
    ],
)
def test_a_server_list_where_one_server_is_taken_is_refused(area: str, url: str) -> None:
    import microstd

    with pytest.raises(InvalidArgument, match="takes one server, got 2"):
        getattr(microstd, area).open(url)


# -- Redis Sentinel ------------------------------------------------------------


def test_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    from microstd._engines.redis import RedisEndpoint

    endpoint, rest = RedisEndpoint.from_url(
        "redis+sentinel://:s3cret@s1,s2:26380/mymaster/3?timeout=2&prefix=app&sentinel_password=x",
        area=("prefix",),
    )
    target = endpoint.sentinel
    assert target is not None
    assert target.sentinels == (("s1", 26379), ("s2", 26380))
    assert (target.service, target.password, target.tls) == ("mymaster", "x", False)
    assert endpoint.timeouts.request == 2.0
    assert rest == {"prefix": "app"}
    # The data nodes' credentials and database, for every connection to the master.
    assert endpoint.url == "redis://:s3cret@sentinel-master/3"
    assert "s3cret" not in endpoint.redacted
    assert "s3cret" not in repr(endpoint)
    assert endpoint.redacted == "redis+sentinel://:***@s1,s2:26380/mymaster/3"


@pytest.mark.parametrize(
    "url",
    [
        "redis-sentinel://h:26379/mymaster",
        "sentinel://h:26379/?service_name=mymaster",
        "rediss+sentinel://h:26379/mymaster/0",
    ],
)
def test_sentinel_spellings(url: str) -> None:
    from microstd._engines.redis import RedisEndpoint

    endpoint, _ = RedisEndpoint.from_url(url)
    assert endpoint.sentinel is not None
    assert endpoint.sentinel.service == "mymaster"
    assert endpoint.sentinel.tls == url.startswith("rediss")
    assert endpoint.url.endswith("/0")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:26379", "names the master"),
        ("redis+sentinel://h:26379/mymaster/x", "database must be an int"),
        ("redis+sentinel://h:26379/mymaster/0/extra", "path is /SERVICE"),
    ],
)
def test_bad_sentinel_urls_are_clear_errors(url: str, why: str) -> None:
    from microstd._engines.redis import RedisEndpoint

    with pytest.raises(InvalidArgument, match=why):
        RedisEndpoint.from_url(url)


def test_a_redis_server_list_points_at_sentinel() -> None:
    with pytest.raises(InvalidArgument, match=r"redis\+sentinel://"):
        microstd.store.open("redis://a:6379,b:6379/0")


@pytest.mark.parametrize("area", ["store", "broker", "sync", "registry"])
def test_every_redis_area_takes_a_sentinel_url(area: str) -> None:
    import microstd

    opened = getattr(microstd, area).open("redis+sentinel://127.0.0.1:1/mymaster/0")
    assert "redis+sentinel://127.0.0.1:1/mymaster/0" in repr(opened)


async def test_no_master_found_is_connection_failed() -> None:
    """Every Sentinel down: `ConnectionFailed` within the timeouts, naming the URL."""
    url = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0"
    store = microstd.store.open(url, connect_timeout=1.0, timeout=1.0)
    with pytest.raises(ConnectionFailed, match=r"redis\+sentinel://") as info:
        await store.connect()
    assert "No master found for 'mymaster': 1 Sentinel(s) could not be reached" in str(info.value)
    await store.close()


# -- Redis Cluster -------------------------------------------------------------


@pytest.mark.parametrize("area", ["store", "locks", "registry", "broker"])
async def test_no_cluster_node_reachable_is_connection_failed(area: str) -> None:
    """Every node of a cluster URL down: `ConnectionFailed` (not a bare
    MicrostdError, which callers retrying on ConnectionFailed would not retry),
    with the password redacted."""
    import microstd.broker
    import microstd.registry
    import microstd.sync

    module = {
        "store": microstd.store,
        "locks": microstd.sync,
        "registry": microstd.registry,
        "broker": microstd.broker,
    }[area]
    url = f"redis+cluster://bob:s3cret@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/0"
    opened = module.open(url, connect_timeout=1.0, timeout=1.0)
    try:
        with pytest.raises(ConnectionFailed, match="unreachable") as info:
            await opened.connect()
        assert "s3cret" not in str(info.value)
        assert "bob:***@" in str(info.value)
    finally:
        await opened.close()


def test_cluster_url_names_the_nodes() -> None:
    from microstd._engines.redis import RedisEndpoint

    endpoint, rest = RedisEndpoint.from_url(
        "redis+cluster://:s3cret@n1,n2:7001/?timeout=2&prefix=app&require_full_coverage=false",
        area=("prefix",),
    )
    target = endpoint.cluster
    assert target is not None
    assert target.nodes == (("n1", 6379), ("n2", 7001))
    assert not target.tls
    assert endpoint.sentinel is None
    assert endpoint.timeouts.request == 2.0
    assert rest == {"prefix": "app"}
    assert endpoint.url == "redis://:s3cret@cluster/0?require_full_coverage=false"
    assert "s3cret" not in endpoint.redacted
    assert endpoint.redacted == "redis+cluster://:***@n1,n2:7001/"


@pytest.mark.parametrize(
    "url", ["redis-cluster://h:7000", "rediss+cluster://h:7000/0", "redis+cluster://h/"]
)
def test_cluster_spellings(url: str) -> None:
    from microstd._engines.redis import RedisEndpoint

    endpoint, _ = RedisEndpoint.from_url(url)
    assert endpoint.cluster is not None
    assert endpoint.cluster.tls == url.startswith("rediss")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://h:7000/?db=2", "only database 0"),
        ("redis+cluster://h:7000/?tiemout=1", "Did you mean 'timeout'"),
        ("redis+cluster://h:7000/?require_full_coverage=maybe", "require_full_coverage"),
    ],
)
def test_bad_cluster_urls_are_clear_errors(url: str, why: str) -> None:
    from microstd._engines.redis import RedisEndpoint

    with pytest.raises(InvalidArgument, match=why):
        RedisEndpoint.from_url(url)[0].client()


def test_hash_tag_keeps_a_tag_and_wraps_anything_else() -> None:
    from microstd._engines.redis_cluster import hash_tag

    assert hash_tag("microstd:store:") == "{microstd:store:}"
    assert hash_tag("app:{orders}:") == "app:{orders}:"
    assert hash_tag("a{}b:") == "{a{}b:}"
    assert hash_tag("") == "{}"


@pytest.mark.parametrize("area", ["store", "broker", "sync", "registry"])
def test_the_store_broker_locks_and_registry_take_a_cluster_url(area: str) -> None:
    import microstd

    opened = getattr(microstd, area).open("redis+cluster://127.0.0.1:1,127.0.0.1:2/")
    assert "redis+cluster://127.0.0.1:1,127.0.0.1:2/" in repr(opened)


def test_the_config_source_refuses_a_cluster_url_at_open() -> None:
    """The one area whose operations span hash slots says so when opened, naming it."""
    from microstd import config
    from microstd.errors import NotSupported

    url = "redis+cluster://127.0.0.1:1/"
    with pytest.raises(NotSupported, match=r"redis\+cluster://.*config sources"):
        config.redis(url, "app")
