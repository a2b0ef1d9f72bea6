"""microstd._engines.postgres: URLs, redaction, error mapping, the shared pool, schema versions."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import microstd.store
from _servers import free_port
from microstd._engines import postgres
from microstd._engines._common import Timeouts
from microstd.errors import Closed, ConnectionFailed, InvalidArgument, MicrostdError, NotSupported

# -- URLs and options (no server) -----------------------------------------------------


def test_url_options_split_between_engine_area_and_asyncpg() -> None:
    endpoint, area = postgres.PostgresEndpoint.from_url(
        "postgresql://app:s3cret@127.0.0.1:5440/db?table=t1&timeout=2&sslmode=disable&pool_size=3",
        {"connect_timeout": 0.5, "codec": "application/json"},
        area=("table",),
    )
    assert endpoint.dsn == "postgresql://app:s3cret@127.0.0.1:5440/db?sslmode=disable"
    assert "s3cret" not in endpoint.redacted
    assert "s3cret" not in repr(endpoint)
    assert endpoint.timeouts == Timeouts(connect=0.5, request=2.0, ping_interval=10.0)
    assert endpoint.pool_size == 3
    assert area == {"table": "t1", "codec": "application/json"}


def test_defaults_are_the_documented_ones() -> None:
    endpoint, _ = postgres.PostgresEndpoint.from_url("postgres://h/db")
    assert endpoint.timeouts == Timeouts(connect=5.0, request=5.0, ping_interval=10.0)
    assert (endpoint.pool_size, endpoint.statement_cache_size) == (10, 100)


@pytest.mark.parametrize(
    ("option", "value"),
    [("pool_size", "0"), ("pool_size", "x"), ("statement_cache_size", "-1"), ("timeout", "0")],
)
def test_bad_engine_options_are_refused(option: str, value: str) -> None:
    with pytest.raises((ValueError, TypeError), match=option):
        postgres.PostgresEndpoint.from_url(f"postgresql://h/db?{option}={value}")


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a-b", "a;drop table x", "x" * 41, "é"])
def test_table_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(InvalidArgument, match="identifier"):
        microstd.store.open("postgresql://127.0.0.1:1/db", table=name)


async def test_unreachable_server_fails_fast_with_a_redacted_message() -> None:
    port = free_port()
    store = microstd.store.open(
        f"postgresql://app:s3cret@127.0.0.1:{port}/db", connect_timeout=1.0, timeout=1.0
    )
    with pytest.raises(ConnectionFailed) as info:
        await asyncio.wait_for(store.read("k"), 15)
    assert "s3cret" not in str(info.value)
    assert "unreachable" in str(info.value)
    await store.close()


# -- against a server ------------------------------------------------------------------

pytestmark = pytest.mark.services


async def test_server_errors_map_to_microstd_errors_with_the_sqlstate(postgres_url: str) -> None:
    endpoint, _ = postgres.PostgresEndpoint.from_url(postgres_url)
    conn = await postgres.acquire(endpoint)
    try:
        with pytest.raises(MicrostdError, match="42P01"):
            await conn.fetch("probe", "SELECT * FROM no_such_table_here")
    finally:
        await postgres.release(conn)


async def test_a_statement_past_the_timeout_is_cancelled(postgres_url: str) -> None:
    endpoint, _ = postgres.PostgresEndpoint.from_url(postgres_url, {"timeout": 0.3})
    conn = await postgres.acquire(endpoint)
    try:
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(conn.fetch("probe", "SELECT pg_sleep(30)"), 15)
        # The pool is still usable afterwards.
        assert await conn.fetchval("probe", "SELECT 41 + 1") == 42
    finally:
        await postgres.release(conn)


async def test_areas_naming_one_url_share_one_pool(postgres_url: str) -> None:
    endpoint, _ = postgres.PostgresEndpoint.from_url(postgres_url)
    a = microstd.store.open(postgres_url, table=f"t{uuid.uuid4().hex[:10]}")
    b = microstd.store.open(postgres_url, table=f"t{uuid.uuid4().hex[:10]}")
    async with a, b:
        await a.write("k", 1)
        await b.write("k", 2)
        assert postgres.shared_count(endpoint) == 2
    assert postgres.shared_count(endpoint) == 0


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    table = f"t{uuid.uuid4().hex[:10]}"
    async with microstd.store.open(postgres_url, table=table) as store:
        await store.write("k", 1)
    endpoint, _ = postgres.PostgresEndpoint.from_url(postgres_url)
    conn = await postgres.acquire(endpoint)
    try:
        await conn.execute(
            "bump", "UPDATE microstd_schema SET version = 99 WHERE name = $1", f"store:{table}"
        )
    finally:
        await postgres.release(conn)
    store = microstd.store.open(postgres_url, table=table)
    with pytest.raises(NotSupported, match="version 99"):
        await store.connect()
    await store.close()


# -- the pool -------------------------------------------------------------------------


async def _pooled(postgres_url: str, **options: object) -> postgres.PostgresConnection:
    endpoint, _ = postgres.PostgresEndpoint.from_url(
        postgres_url, {"application_name": f"p{uuid.uuid4().hex[:8]}", **options}
    )
    return await postgres.acquire(endpoint)


async def test_statements_one_after_another_reuse_one_connection(postgres_url: str) -> None:
    conn = await _pooled(postgres_url)
    try:
        pids = {await conn.fetchval("probe", "SELECT pg_backend_pid()") for _ in range(20)}
        assert len(pids) == 1
        assert conn.pool is not None
        assert conn.pool.open_count == 1
    finally:
        await postgres.release(conn)


async def test_the_pool_never_opens_more_than_pool_size(postgres_url: str) -> None:
    conn = await _pooled(postgres_url, pool_size=3)
    try:
        pids = await asyncio.gather(
            *(
                conn.fetchval("probe", "SELECT pg_backend_pid() FROM pg_sleep(0.05)")
                for _ in range(12)
            )
        )
        assert len(set(pids)) <= 3
        assert conn.pool is not None
        assert conn.pool.open_count <= 3
    finally:
        await postgres.release(conn)


async def test_waiting_for_a_busy_pool_is_bounded(postgres_url: str) -> None:
    """With every connection busy, a statement waits at most connect_timeout + timeout
    for one, then fails fast; once one is free it works."""
    conn = await _pooled(postgres_url, pool_size=1, timeout=0.3, connect_timeout=0.3)
    try:
        async with conn.connection("probe"):  # holds the only connection
            with pytest.raises(ConnectionFailed):
                await asyncio.wait_for(conn.fetchval("probe", "SELECT 1"), 15)
        assert await conn.fetchval("probe", "SELECT 1") == 1
    finally:
        await postgres.release(conn)


async def test_a_connection_whose_statement_timed_out_is_not_reused(postgres_url: str) -> None:
    conn = await _pooled(postgres_url, timeout=0.3)
    try:
        first = await conn.fetchval("probe", "SELECT pg_backend_pid()")
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(conn.fetch("probe", "SELECT pg_sleep(30)"), 15)
        # Its protocol state is unknown (a cancel request may still be under way).
        assert await conn.fetchval("probe", "SELECT pg_backend_pid()") != first
    finally:
        await postgres.release(conn)


async def test_a_server_error_keeps_the_connection(postgres_url: str) -> None:
    conn = await _pooled(postgres_url)
    try:
        first = await conn.fetchval("probe", "SELECT pg_backend_pid()")
        with pytest.raises(MicrostdError, match="22012"):
            await conn.fetchval("probe", "SELECT 1 / 0")
        assert await conn.fetchval("probe", "SELECT pg_backend_pid()") == first
    finally:
        await postgres.release(conn)


async def test_a_cancelled_caller_gives_its_connection_back(postgres_url: str) -> None:
    conn = await _pooled(postgres_url, pool_size=1)
    try:
        task = asyncio.ensure_future(conn.fetch("probe", "SELECT pg_sleep(30)"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The only slot is free again (the cancelled one was closed, not leaked).
        assert await asyncio.wait_for(conn.fetchval("probe", "SELECT 2"), 15) == 2
    finally:
        await postgres.release(conn)


async def test_a_transaction_left_open_is_not_handed_on(postgres_url: str) -> None:
    conn = await _pooled(postgres_url)
    try:
        async with conn.connection("probe") as raw:
            await raw.execute("BEGIN")  # and never committed
            first = await raw.fetchval("SELECT pg_backend_pid()")
        assert await conn.fetchval("probe", "SELECT pg_backend_pid()") != first
    finally:
        await postgres.release(conn)


async def test_a_closed_pool_refuses_with_closed(postgres_url: str) -> None:
    conn = await _pooled(postgres_url)
    pool = conn.pool
    assert pool is not None
    await postgres.release(conn)
    with pytest.raises(Closed):
        await pool.acquire(1.0)
