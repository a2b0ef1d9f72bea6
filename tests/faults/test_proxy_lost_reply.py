"""The fault proxy's `lose_reply_to` against a scripted HTTP server: the tests
that use it (S3's conditional writes) are only as good as its loss is sure."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from faults._proxy import FaultProxy

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def scripted_server() -> Iterator[tuple[int, list[bytes]]]:
    """A server that reads one request and sends the replies the test appends to
    its list, each in one send (as a loaded server's replies can coalesce)."""
    listener = socket.create_server(("127.0.0.1", 0))
    replies: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for reply in replies:
                conn.sendall(reply)
            with contextlib.suppress(OSError):
                conn.recv(65536)  # until the proxy resets the connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], replies
    listener.close()
    thread.join(5)


def _exchange(port: int) -> bytes:
    """Send a PUT through the proxy on `port`; what came back before the connection ended."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"PUT /b/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")
        try:
            while chunk := client.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return got


@pytest.mark.parametrize("coalesced", [False, True])
def test_the_final_reply_is_lost_even_when_it_comes_with_the_interim_one(
    scripted_server: tuple[int, list[bytes]], coalesced: bool
) -> None:
    port, replies = scripted_server
    replies.append(CONTINUE + FINAL if coalesced else FINAL)
    with FaultProxy(port) as proxy:
        proxy.lose_reply_to(b"PUT ")
        got = _exchange(proxy.port)
        assert proxy.lost_replies == 1
    assert FINAL not in got
    assert got == (CONTINUE if coalesced else b"")
