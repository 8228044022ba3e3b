"""The SMTP bridge under a connection flood (review F4): idle unauthenticated sessions
must not hold the process's file descriptors.

``[smtp] max_sessions`` bounds the sessions open at once (one more is told ``421
4.7.0`` and closed at once); ``[smtp] preauth_timeout_seconds`` bounds how long a
session may stay unauthenticated, however busy it keeps itself (NOOP every few
seconds, as slowloris.py did). A bounded number of sockets, small limits.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.demo.network import Network
from tests.support.smtp import RawSmtp, add_integrator, close_all, wait_for
from tests.system.test_relay import FAST

MAX_SESSIONS = 4
PREAUTH_SECONDS = 5
NOOP_ROUNDS = 90  # a NOOP every 0.25 s or so: beyond PREAUTH_SECONDS, within CALL_LIMITS
CLIENT = "alice"


@dataclass
class Limited:
    port: int
    login: tuple[str, str]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    env = {
        **FAST,
        "VALISE_SMTP_MAX_SESSIONS": str(MAX_SESSIONS),
        "VALISE_SMTP_PREAUTH_TIMEOUT_SECONDS": str(PREAUTH_SECONDS),
        "VALISE_SMTP_TIMEOUT_SECONDS": "120",
    }
    root: Path = tmp_path_factory.mktemp("smtp-limits")
    with Network(root, missions=("M-PARIS",), env=env) as net:
        token = add_integrator(net.sites["M-PARIS"].directory, CLIENT)
        yield Limited(net.sites["M-PARIS"].ports["smtp"], (CLIENT, token))


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_all()


def _authenticated(port: int, login: tuple[str, str]) -> RawSmtp:
    raw = RawSmtp(port)
    assert raw.greeting[0] == 220, raw.greeting
    assert raw.cmd("EHLO client.test")[0] == 250
    raw.starttls()
    assert raw.cmd("EHLO client.test")[0] == 250
    plain = base64.b64encode(f"\0{login[0]}\0{login[1]}".encode()).decode()
    assert raw.cmd("AUTH PLAIN " + plain)[0] == 235
    return raw


def _a_slot_is_free(port: int) -> bool:
    probe = RawSmtp(port)
    free = probe.greeting[0] == 220
    if free:
        probe.cmd("QUIT")
    probe.close()
    return free


def test_a_session_over_max_sessions_is_told_421_and_closed(limited: Limited) -> None:
    wait_for(lambda: _a_slot_is_free(limited.port))
    held = [_authenticated(limited.port, limited.login) for _ in range(MAX_SESSIONS)]
    extra = RawSmtp(limited.port)
    code, lines = extra.greeting
    assert code == 421 and lines[0].startswith("421 4.7.0"), lines
    assert extra.closed()
    for raw in held:  # the sessions within the limit are untouched
        assert raw.cmd("NOOP")[0] == 250
    leaving = held.pop()
    leaving.cmd("QUIT")
    leaving.close()  # as a client does after QUIT: else the TLS close waits on it (30 s)
    wait_for(lambda: _a_slot_is_free(limited.port))


def test_an_unauthenticated_session_is_closed_however_busy(limited: Limited) -> None:
    wait_for(lambda: _a_slot_is_free(limited.port))
    authed = _authenticated(limited.port, limited.login)  # connected first
    idle = RawSmtp(limited.port)
    assert idle.cmd("EHLO slow.test")[0] == 250
    for _ in range(NOOP_ROUNDS):
        code, lines = idle.cmd("NOOP")
        if code != 250:
            break
        assert authed.cmd("NOOP")[0] == 250
        idle.sock.settimeout(0.25)
        try:
            code, lines = idle.reply()  # the 421 may come between two NOOPs
            break
        except TimeoutError:
            idle.sock.settimeout(10)
    assert code == 421 and lines[0].startswith("421 4.7.0"), lines
    assert idle.closed()
    assert authed.cmd("NOOP")[0] == 250  # past the same deadline, authenticated: kept
