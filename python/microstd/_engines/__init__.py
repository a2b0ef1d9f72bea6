"""One client module per network engine, shared by every area that talks to it.

    microstd._engines.redis   Redis (redis-py asyncio): store, broker, locks, registry, config
    microstd._engines.nats    NATS and JetStream (nats-py): store, broker, registry, config
    microstd._engines.etcd    etcd v3 JSON gateway (aiohttp): locks, registry, config

Each module owns, for its engine and for every area at once:

- **the URL**: parsing, credentials, and the redacted form for logs and reprs
  (`microstd._backends.redact`); the engine's own options (below) are taken
  out of the query string, the area's options are left for the area;
- **the timeouts**: `connect_timeout` (seconds to open a connection) and
  `timeout` (seconds any one request may take), plus the engine's liveness
  setting (`ping_interval`), each with a documented default that a URL query
  option or a keyword option overrides (`redis://h:6379/0?timeout=2`);
- **the error mapping**: one context manager, `errors(endpoint, what)`, that
  turns the client library's exceptions into `microstd.errors`
  (`ConnectionFailed` for "the server could not be reached or did not answer in
  time"), always `raise ... from exc`, the way httpx maps httpcore's
  exceptions in one place;
- **the shared connection**: one client per URL and settings per event loop,
  reference counted (`acquire` / `release`), so a service whose store, broker
  and registry name the same server holds one connection (NATS) or one pool
  (Redis, etcd), not one per area.

An area module (`microstd.store.redis`, ...) keeps only what is specific to it:
its key layout, scripts and semantics. A new engine (PostgreSQL) follows the
same shape: `Endpoint.from_url`, `acquire` / `release`, `errors`.

Errors and ambiguity: a request that raised `ConnectionFailed` *before* it was
sent did not happen; one that failed *after* it was sent (a timeout, a
connection lost while waiting for the answer) may or may not have been applied
by the server. Callers cannot tell these apart from the exception, so every
write that raised `ConnectionFailed` is ambiguous; docs/guarantees.md says so
per backend.
"""

from __future__ import annotations

__all__: list[str] = []
