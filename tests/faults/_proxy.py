"""A loopback TCP proxy a test controls, to cut clients off from a live server.

    with FaultProxy(server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        proxy.stall()    # connections stay open, nothing passes either way
        proxy.resume()   # bytes flow again (what waited is delivered)
        proxy.resume(hold_closes=True)  # ... but a client's close is not passed on (yet)
        proxy.stall_at(b"POST /v3/kv/put")  # stall when the next such request comes
        proxy.drop()     # every open connection is reset; new ones are accepted
        proxy.lose_reply_to(b"PUT ")  # the next such request reaches the server, its reply is lost
        proxy.lose_reply_to(b"k3", anywhere=True)  # ... the next request holding these bytes

`stall()` is the "frozen network" case: new connections are accepted (and
connected upstream) but nothing is forwarded, so a client sees neither an
error nor an answer. `drop()` is the "cut connection" case: each connection
is closed with a TCP reset, on both sides. The proxy runs on plain threads
(two per connection), so it works the same for async and blocking clients.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["FaultProxy"]

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close `sock` with a TCP reset (SO_LINGER 0), never raising."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _split_interim(data: bytes) -> tuple[bytes, bytes]:
    """(the HTTP "100 Continue" responses `data` starts with, the rest). An interim
    response means the server has not seen the request's body yet; on a loaded
    machine it can arrive in one chunk with the final reply, which is the one to
    lose. An interim response cut off mid-chunk counts as interim."""
    interim = b""
    while data.startswith((b"HTTP/1.1 100 ", b"HTTP/1.0 100 ")):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return interim + data, b""
        interim, data = interim + data[: end + 4], data[end + 4 :]
    return interim, data


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        # Blocking sockets, read only once select() says so: a socket timeout
        # would also apply to sendall() from the other pump, and a client slow
        # to read (a loaded machine) would see its connection reset.
        client.settimeout(None)
        upstream.settimeout(None)
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._half_closed = 0
        # Set when a request whose reply must be lost went upstream on this link.
        self.lose_reply = False

    def start(self) -> None:
        for src, dst in ((self.client, self.upstream), (self.upstream, self.client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.dead.is_set():
                # Stalled: stop reading, so the bytes wait in the kernel's buffers
                # and the sender's socket fills up, as with a frozen network.
                if not self.proxy._flowing.wait(0.05):
                    continue
                readable, _, _ = select.select([src], [], [], 0.05)
                if not readable:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    # A client's close held back: the server goes on with what it got.
                    while src is self.client and self.proxy._closes_held.is_set():
                        if self.dead.wait(0.05):
                            return
                    self._pass_close(dst)
                    return
                if src is self.client and self.proxy._take_stall_at(data):
                    self.proxy.stall()  # this request waits too
                if src is self.client and self.proxy._take_lost_reply(data):
                    self.lose_reply = True
                elif src is self.upstream and self.lose_reply:
                    interim, final = _split_interim(data)
                    if final:
                        # The server answered: reset the client instead of replying.
                        if interim:
                            dst.sendall(interim)
                        self.proxy._before_reset()
                        break
                while not self.proxy._flowing.wait(0.05):
                    if self.dead.is_set():
                        return
                dst.sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket kill() closed
            pass
        self.kill()

    def _pass_close(self, dst: socket.socket) -> None:
        """One side closed its end: pass the close on as a close, not a reset, so
        what is still on its way to the other side (the reply a server sends
        just before closing) is delivered; done once both sides have closed."""
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            self._half_closed += 1
            both = self._half_closed == 2
        if both and not self.dead.is_set():
            self.dead.set()
            for sock in (self.client, self.upstream):
                with contextlib.suppress(OSError):
                    sock.close()
            self.proxy._forget(self)

    def kill(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        _reset(self.client)
        _reset(self.upstream)
        self.proxy._forget(self)


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`, with faults on demand."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closes_held = threading.Event()
        self._stall_at: tuple[bytes, ...] = ()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._lose_reply_to: bytes | None = None
        self._anywhere = False
        self._then: Callable[[], object] | None = None
        #: Replies lost on purpose so far (`lose_reply_to`).
        self.lost_replies = 0
        self._closed = threading.Event()
        #: Connections accepted so far (a reconnecting client makes new ones).
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                _reset(client)  # the server is down: the client sees a reset
                continue
            link = _Link(self, client, upstream)
            with self._lock:
                self.accepted += 1
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    @property
    def connections(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            return len(self._links)

    def stall(self) -> None:
        """Stop forwarding, both ways, on every connection (new ones are accepted)."""
        self._flowing.clear()

    def resume(self, *, hold_closes: bool = False) -> None:
        """Forward again; what waited during the stall is delivered. With
        `hold_closes`, a client's close (one that gave up on its request during
        the stall, say) is not passed on until `pass_closes()`: the server gets
        the request late and, its connection still open, carries it out, as
        behind a network that delivers held packets late or a proxy that keeps
        its own connection to the server."""
        if hold_closes:
            self._closes_held.set()
        self._flowing.set()

    def stall_at(self, *prefixes: bytes) -> None:
        """Stall (as `stall()`) when the next request starting with one of
        `prefixes` comes, before it is forwarded."""
        with self._lock:
            self._stall_at = prefixes

    def _take_stall_at(self, data: bytes) -> bool:
        with self._lock:
            if not self._stall_at or not data.startswith(self._stall_at):
                return False
            self._stall_at = ()
            return True

    def pass_closes(self) -> None:
        """Pass on the clients' closes held by `resume(hold_closes=True)`."""
        self._closes_held.clear()

    def drop(self) -> None:
        """Reset every open connection (both sides); later connections work."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill()

    def lose_reply_to(
        self, prefix: bytes, then: Callable[[], object] | None = None, *, anywhere: bool = False
    ) -> None:
        """The next request starting with `prefix` (b"PUT "), or holding it anywhere
        (`anywhere=True`: one chunk as read from the client), is forwarded to the server,
        and its connection is reset when the server answers: the request is
        applied but the client never hears so, as when a reply is lost. `then`
        runs once the server has answered, before the client sees the reset
        (another client's write landing between a lost reply and a resend)."""
        with self._lock:
            self._lose_reply_to = prefix
            self._anywhere = anywhere
            self._then = then

    def _before_reset(self) -> None:
        with self._lock:
            then, self._then = self._then, None
            self.lost_replies += 1
        if then is not None:
            then()

    def _take_lost_reply(self, data: bytes) -> bool:
        with self._lock:
            wanted = self._lose_reply_to
            if wanted is None:
                return False
            if not (wanted in data if self._anywhere else data.startswith(wanted)):
                return False
            self._lose_reply_to = None
            return True

    def close(self) -> None:
        """Stop accepting and reset everything."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._closes_held.clear()
        self._flowing.set()
        self.drop()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
