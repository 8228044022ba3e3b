"""Connection exhaustion on the HTTP API (review: HTTP slowloris).

Before: a client trickling one header line every few seconds was never closed
(aiohttp's default allowance for a request head is an hour), and nothing bounded
how many connections were open at once. Now [http] header_timeout_seconds closes a
connection whose request head is not complete in time, and [http] max_connections
answers one connection too many 503 ``too_many_connections`` and closes it.

Bounded: a few sockets, each wait capped (a hang guard, not a timing assertion).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.demo.network import Network
from tests.system.test_http_api import ENV, valise

MAX_CONNECTIONS = 4
GUARD_S = 30.0  # far past the 1 s allowance: only a server that never closes hits it
TRICKLE_S = 0.5  # a header line each: 60 lines in GUARD_S, under aiohttp's 128 headers


@dataclass
class Api:
    port: int
    token: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = {
        **ENV,
        "VALISE_HTTP_HEADER_TIMEOUT_SECONDS": "1",
        "VALISE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with Network(Path(tmp_path_factory.mktemp("slowloris")), ("M-PARIS",), env=env) as net:
        paris = net.sites["M-PARIS"]
        out = valise("integrator", "add", "app", "--json", "--dir", str(paris.directory))
        assert out.returncode == 0, out.stderr
        yield Api(paris.ports["http"], json.loads(out.stdout)["token"])


async def _connect(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", api.port)


async def test_a_trickled_request_head_is_closed(api: Api) -> None:
    reader, writer = await _connect(api)
    writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        try:
            while True:
                await asyncio.sleep(TRICKLE_S)
                writer.write(b"X-a: b\r\n")
                await writer.drain()
        except ConnectionError:
            return

    feeder = asyncio.create_task(trickle())
    try:
        try:
            rest = await asyncio.wait_for(reader.read(), GUARD_S)  # until the server closes
        except ConnectionResetError:  # closed with our last line unread
            rest = b""
    finally:
        feeder.cancel()
        writer.close()
    assert b"200 OK" not in rest  # closed (with nothing, or a 4xx), never served


async def _hold(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An authenticated connection in the middle of a submission's body: it counts,
    the header allowance no longer applies to it, and it is never closed to make room
    (it answered a request with the token first, so it is known authenticated)."""
    reader, writer = await _connect(api)
    writer.write(
        b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), GUARD_S)
    writer.write(
        b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\n".encode()
        + b"Content-Type: text/plain\r\nValise-To: M-PARIS\r\nContent-Length: 1000\r\n\r\nhel"
    )
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), GUARD_S)
    finally:
        writer.close()


async def test_one_connection_past_max_connections_is_refused_503(api: Api) -> None:
    holders = [await _hold(api) for _ in range(MAX_CONNECTIONS)]
    try:
        # Every slot is held by a token holder: nothing can be closed to make room.
        extra = await _answer(*await _connect(api))
        assert extra.startswith(b"HTTP/1.1 503"), extra
        body = extra.partition(b"\r\n\r\n")[2]
        assert json.loads(body)["code"] == "too_many_connections", body
        # One holder leaves: a new connection is served again (401: no token given).
        holders.pop()[1].close()
        for _ in range(100):  # the server sees the close soon; bounded retries
            answer = await _answer(*await _connect(api))
            if not answer.startswith(b"HTTP/1.1 503"):
                break
            await asyncio.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 401"), answer
    finally:
        for _, w in holders:
            w.close()
