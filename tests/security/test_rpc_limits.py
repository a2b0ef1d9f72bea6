"""RPC: an oversized body is a 413 ServiceError on both paths (HTTP and in
process), and 415 / 406 replies quote request headers only truncated and
stripped of anything but printable ASCII."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

import microstd
from microstd import codec
from microstd.client import Client
from microstd.errors import ServiceError
from microstd.rpc.server import quote_header

LIMIT = 1024


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, microstd.Service]]:
    registry = f"memory://sec{uuid.uuid4().hex[:8]}"
    svc = microstd.Service("sized", registry=registry)

    @svc.handler("Sized.Echo")
    async def echo(req: object) -> object:
        return req

    svc.server.max_body = LIMIT
    async with svc:
        yield registry, svc


@pytest.mark.parametrize("local", [False, True], ids=["http", "local"])
@pytest.mark.parametrize("size", [LIMIT + 1, 3_000_000])
async def test_oversized_body_is_a_413_service_error(
    service: tuple[str, microstd.Service], local: bool, size: int
) -> None:
    registry, _ = service
    async with Client(registry, local=local, retries=0) as client:
        assert await client.call("sized", "Sized.Echo", b"x" * 100) == b"x" * 100
        with pytest.raises(ServiceError) as info:
            await client.call("sized", "Sized.Echo", b"x" * size)
        assert info.value.code == 413
        assert f"larger than {LIMIT} bytes" in info.value.detail
        # The client and the server both go on working.
        assert await client.call("sized", "Sized.Echo", 7) == 7


async def test_oversized_body_reply_has_the_error_shape(
    service: tuple[str, microstd.Service],
) -> None:
    _, svc = service
    url = f"http://{svc.server.address}/Sized.Echo"
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/json"}
        async with http.post(url, data=b"[" + b"1," * LIMIT + b"1]", headers=headers) as resp:
            assert resp.status == 413
            assert resp.headers["Microstd-Error"] == "1"
            error = codec.json.loads(await resp.read())
            assert set(error) == {"id", "code", "detail", "status"}  # type: ignore[arg-type]


# aiohttp's parser refuses control characters and fields over 8 KB itself (400);
# what gets through is quoted: obs-text bytes and a long value.
HOSTILE = "text/\u00ff\u00e9<script>" + "A" * 8000


async def _raw_post(address: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request written by hand: aiohttp's client refuses control
    characters in headers, an attacker's client does not."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    return reply


@pytest.mark.parametrize("header", ["Content-Type", "Accept"])
async def test_error_replies_do_not_echo_hostile_headers(
    service: tuple[str, microstd.Service], header: str
) -> None:
    _, svc = service
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    headers[header] = HOSTILE
    reply = await _raw_post(svc.server.address, "/Sized.Echo", headers, b"1")
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == (b"415" if header == "Content-Type" else b"406")
    body = rest.partition(b"\r\n\r\n")[2]
    detail = str(codec.json.loads(body)["detail"])  # type: ignore[index]
    assert len(body) < 400
    assert detail.isascii()
    assert "??<script>" in detail
    assert "AAAA..." in detail


def test_quote_header_bounds_and_cleans() -> None:
    assert quote_header("application/x") == "'application/x'"
    assert quote_header("a\x00\x1b\nb\u00e9") == "'a???b?'"
    quoted = quote_header("x" * 10_000)
    assert len(quoted) < 80
    assert quoted.endswith("...'")
