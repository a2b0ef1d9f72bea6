"""RPC over HTTP: the server's dispatch, call context and handler conversion.

Most code uses `microstd.Service` (which owns a `Server`) and `microstd.Client`;
`current_context()` gives a handler the incoming call's request id, caller,
deadline and metadata.
"""

from __future__ import annotations

from microstd.rpc.context import Context, current_context
from microstd.rpc.limits import Limits
from microstd.rpc.server import Reply, Server, ServerMiddleware

__all__ = ["Context", "Limits", "Reply", "Server", "ServerMiddleware", "current_context"]
