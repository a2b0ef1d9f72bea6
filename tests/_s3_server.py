"""moto's S3 server, one request at a time: `python _s3_server.py -H HOST -p PORT`.

Real S3 applies a conditional PutObject (`If-Match`, `If-None-Match: *`)
atomically. moto_server (5.x) checks the precondition and then writes without a
lock, on one thread per request, so two PUTs with the same `If-Match` ETag can
both succeed: the eight-thread compare-and-set contract test lost one increment
in a few hundred runs that way. moto also hashes a new object's body for its
ETag lazily and without a lock, racing any reader of that object. Serialising
requests (moto's handlers hold the GIL anyway, so little concurrency is lost)
gives the tests a server with the atomicity the s3:// store relies on.
"""

from __future__ import annotations

import threading
from typing import Any

from moto import server

_one_at_a_time = threading.Lock()
_dispatch = server.DomainDispatcherApplication.__call__


def _serialised(self: Any, environ: Any, start_response: Any) -> Any:
    # moto builds the whole response inside the call, so the lock covers the
    # precondition check, the write and the ETag.
    with _one_at_a_time:
        return _dispatch(self, environ, start_response)


server.DomainDispatcherApplication.__call__ = _serialised  # type: ignore[method-assign]

if __name__ == "__main__":
    server.main()
