"""Tokenless clients cannot lock token holders out of the HTTP API (review 2, F2).

Before: ``[http] header_timeout_seconds`` was aiohttp's keep-alive clock and every
answer restarted it, a 401 too; a client holding ``max_connections`` connections and
sending one tokenless ``GET /v1/inbox`` on each now and then kept every integrator at
503. Now a refusal closes its connection, a connection without a valid token yet
lives at most header_timeout_seconds, and a new connection makes room by closing a
tokenless one (gateway/bridges/http/listener.py): 503 only when every open
connection has a valid token.

Bounded: a fixed number of attacker sockets (each reconnects when closed), a fixed
number of integrator requests; waits are hang guards, never timing assertions.
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

MAX_CONNECTIONS = 6
REFUSED_HOLDERS = 3  # F2: an unauthenticated request on each, kept alive
SILENT_HOLDERS = MAX_CONNECTIONS - REFUSED_HOLDERS  # connect and say nothing
TRIES = 8
GUARD_S = 20.0


@dataclass
class Api:
    port: int
    token: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = {
        **ENV,
        "VALISE_HTTP_HEADER_TIMEOUT_SECONDS": "30",  # the attack works within the clock
        "VALISE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "VALISE_HTTP_MAX_UNAUTHENTICATED_CONNECTIONS": str(MAX_CONNECTIONS - 1),
    }
    with Network(Path(tmp_path_factory.mktemp("lockout")), ("M-PARIS",), env=env) as net:
        paris = net.sites["M-PARIS"]
        out = valise("integrator", "add", "app", "--json", "--dir", str(paris.directory))
        assert out.returncode == 0, out.stderr
        yield Api(paris.ports["http"], json.loads(out.stdout)["token"])


async def _answer_head(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), GUARD_S)
    return head


async def _refused_holder(api: Api, stop: asyncio.Event, seen: list[bytes]) -> None:
    """Sends a tokenless request, keeps the connection, again; reconnects when closed."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            while not stop.is_set():
                writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                seen.append((await _answer_head(reader)).split(b"\r\n")[0])
                await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _silent_holder(api: Api, stop: asyncio.Event) -> None:
    """Connects and says nothing; reconnects when closed."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        try:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the server closes it
        finally:
            writer.close()


async def _integrator(api: Api) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        return (await asyncio.wait_for(reader.read(), GUARD_S)).split(b"\r\n")[0]
    except ConnectionError as exc:
        return f"closed: {exc}".encode()
    finally:
        writer.close()


async def test_a_refusal_closes_its_connection(api: Api) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive asked
        head = await _answer_head(reader)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert b"connection: close" in head.lower(), head
        assert await asyncio.wait_for(reader.read(), GUARD_S) == b""  # closed by the server
    finally:
        writer.close()


async def test_a_token_holder_is_served_while_tokenless_clients_hold_every_slot(
    api: Api,
) -> None:
    stop = asyncio.Event()
    seen: list[bytes] = []
    flood = [asyncio.create_task(_refused_holder(api, stop, seen)) for _ in range(REFUSED_HOLDERS)]
    flood += [asyncio.create_task(_silent_holder(api, stop)) for _ in range(SILENT_HOLDERS)]
    try:
        for _ in range(100):  # until the flood holds every slot: bounded, a hang guard
            if len(seen) >= REFUSED_HOLDERS:
                break
            await asyncio.sleep(0.05)
        answers = [await _integrator(api) for _ in range(TRIES)]
        assert len(seen) >= REFUSED_HOLDERS  # the flood ran (and was refused)
        assert all(line.startswith(b"HTTP/1.1 401") for line in seen), set(seen)
    finally:
        stop.set()
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)
    assert answers == [b"HTTP/1.1 200 OK"] * TRIES, answers
