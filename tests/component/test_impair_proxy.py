"""The bad link on loopback (tests/support/impair.py): bytes through intact and counted,
every connection reset when the link goes down, none while it is down, back after.
The cut schedule follows a clock the test moves: no timing is asserted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest

from tests.support.impair import ImpairedLink, Link


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _until(what: str, test: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _round_trip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    got = await reader.read(-1)
    writer.close()
    return got


async def test_bytes_go_through_intact_and_are_counted(echo_port: int) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    with ImpairedLink(("127.0.0.1", echo_port), Link(rate_bps=400_000_000, delay=0.01)) as link:
        got = await _round_trip(link.port, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        await _until("the counts", lambda: link.stats.carried_down == len(data))
        assert link.stats.carried_up == len(data)
        assert (link.stats.connections, link.stats.cuts) == (1, 0)


async def test_a_cut_resets_every_connection_and_the_link_comes_back(echo_port: int) -> None:
    clock = Clock()
    with ImpairedLink(("127.0.0.1", echo_port), Link(period=10, down=5), clock=clock) as link:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        clock.t = 6.0  # down
        await _until("the cut", lambda: link.stats.cuts == 1)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            writer.write(b"more")
            await writer.drain()
            await reader.readexactly(4)
        writer.close()
        # While it is down a new connection is reset at once.
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            r2, w2 = await asyncio.open_connection("127.0.0.1", link.port)
            w2.write(b"x")
            await w2.drain()
            await r2.readexactly(1)
        assert link.stats.resets == 2
        clock.t = 10.5  # up again
        assert await _round_trip(link.port, b"back") == b"back"
        assert link.stats.cuts == 1


async def test_it_stops_by_itself(echo_port: int) -> None:
    link = ImpairedLink(("127.0.0.1", echo_port), Link(), lifetime=0.2).start()
    await _until("the proxy to stop", lambda: not link._thread.is_alive())
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", link.port)
