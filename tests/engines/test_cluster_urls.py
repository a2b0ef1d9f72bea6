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
