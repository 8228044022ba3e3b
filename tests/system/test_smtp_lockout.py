"""Idle connections cannot keep an integrator from reaching AUTH (review 2, F3).

Before: ``[smtp] max_sessions`` was one pool; a client holding it full with silent
connections, reconnecting the instant the pre-auth deadline ended one, won every
freed place (an integrator was greeted in 0 of 59 tries). Now pre-auth sessions have
their own cap, and a new connection makes room by ending a silent (else the oldest)
pre-auth session (gateway/bridges/smtp/sessions.py): only when every session is
authenticated is a newcomer told 421.

Bounded: a fixed number of attacker sockets (each reconnects when closed), a fixed
number of integrator sessions; waits are hang guards, never timing assertions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.demo.network import Network
from tests.support.smtp import RawSmtp, add_integrator, close_all
from tests.system.test_relay import FAST

MAX_SESSIONS = 6
SQUATTERS = MAX_SESSIONS  # enough to fill the whole (old, shared) pool
TRIES = 6
RETRIES_421 = 3  # attempts per session when the bridge answers 421 before AUTH
CLIENT = "alice"


@dataclass
class Bridge:
    port: int
    login: tuple[str, str]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    env = {
        **FAST,
        "VALISE_SMTP_MAX_SESSIONS": str(MAX_SESSIONS),
        "VALISE_SMTP_MAX_PREAUTH_SESSIONS": str(MAX_SESSIONS - 1),
        "VALISE_SMTP_PREAUTH_TIMEOUT_SECONDS": "30",
    }
    root: Path = tmp_path_factory.mktemp("smtp-lockout")
    with Network(root, missions=("M-PARIS",), env=env) as net:
        token = add_integrator(net.sites["M-PARIS"].directory, CLIENT)
        yield Bridge(net.sites["M-PARIS"].ports["smtp"], (CLIENT, token))


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_all()


async def _squatter(port: int, stop: asyncio.Event, greeted: list[int]) -> None:
    """Connects, says nothing, reconnects the moment it is closed."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            with contextlib.suppress(ConnectionError):
                if (await reader.readline()).startswith(b"220"):
                    greeted.append(1)
                await reader.read()  # until the server closes it
        finally:
            writer.close()


def _retrying_session(bridge: Bridge) -> list[int]:
    """An integrator's session as an SMTP client makes it: a 421 (temporary: "try
    again later") before AUTH is retried, at most RETRIES_421 times. The flood here
    churns (each squatter reconnects the moment it is closed), so on a loaded machine
    it can make an integrator's fresh session the oldest pre-auth one and have it
    evicted once; what must hold is that the integrator gets in, not that it never
    sees a 421."""
    for _ in range(RETRIES_421):
        codes = _integrator_session(bridge)
        if 421 not in codes[:2]:
            return codes
    return codes


def _integrator_session(bridge: Bridge) -> list[int]:
    """Greeting, EHLO, STARTTLS, EHLO, AUTH, NOOP, QUIT: the reply codes."""
    codes: list[int] = []
    try:
        raw = RawSmtp(bridge.port)
        codes.append(raw.greeting[0])
        if codes[0] != 220:
            return codes
        codes.append(raw.cmd("EHLO client.test")[0])
        raw.starttls()
        codes.append(raw.cmd("EHLO client.test")[0])
        plain = base64.b64encode(f"\0{bridge.login[0]}\0{bridge.login[1]}".encode()).decode()
        codes.append(raw.cmd("AUTH PLAIN " + plain)[0])
        codes.append(raw.cmd("NOOP")[0])
        codes.append(raw.cmd("QUIT")[0])
        raw.close()
        return codes
    except (ConnectionError, AssertionError):
        return [*codes, -1]  # closed (or STARTTLS refused) midway


async def test_an_integrator_authenticates_while_idle_connections_fill_the_bridge(
    bridge: Bridge,
) -> None:
    stop = asyncio.Event()
    greeted: list[int] = []
    flood = [asyncio.create_task(_squatter(bridge.port, stop, greeted)) for _ in range(SQUATTERS)]
    try:
        for _ in range(100):  # until the flood holds its places: bounded, a hang guard
            if len(greeted) >= SQUATTERS - 1:
                break
            await asyncio.sleep(0.05)
        sessions = [await asyncio.to_thread(_retrying_session, bridge) for _ in range(TRIES)]
        assert len(greeted) >= SQUATTERS - 1  # the flood ran
    finally:
        stop.set()
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)
    assert sessions == [[220, 250, 250, 235, 250, 221]] * TRIES, sessions
