"""The server fixtures themselves: each engine starts, answers, and restarts."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from _servers import ServerProcess


def _answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


@pytest.mark.parametrize("kind", ["redis", "nats", "etcd", "s3"])
def test_server_starts_on_loopback_and_restarts(
    kind: str, server_factory: Callable[[str], ServerProcess]
) -> None:
    server = server_factory(kind)
    assert _answers(server.port)
    server.stop()
    with pytest.raises(OSError):
        _answers(server.port)
    server.start()
    assert _answers(server.port)
