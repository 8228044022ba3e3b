"""The unit tier's guard (tests/unit/conftest.py) trips on the ways code reaches out of
its process: review 13 (adv13 a3) got past it with os.system, posix_spawn, fork,
sqlite3.dbapi2 and _sqlite3 connects, UDP sendto and name lookups."""

from __future__ import annotations

import _sqlite3  # type: ignore[import-not-found]
import os
import socket
import sqlite3
import sqlite3.dbapi2
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.conftest import UnitTierViolation


def _udp_sendto() -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return s.sendto(b"x", ("127.0.0.1", 9))


def _tcp_connect() -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect(("127.0.0.1", 9))


@pytest.mark.parametrize(
    "reach",
    [
        lambda: subprocess.run(["true"], check=False),
        lambda: os.system("true"),
        lambda: os.posix_spawn("/bin/true", ["true"], {}),
        lambda: os.posix_spawnp("true", ["true"], {}),
        lambda: os.fork(),
        lambda: os.popen("true"),
        lambda: sqlite3.connect(":memory:"),
        lambda: sqlite3.dbapi2.connect(":memory:"),
        lambda: _sqlite3.connect(":memory:"),
        _udp_sendto,
        _tcp_connect,
        lambda: socket.create_connection(("127.0.0.1", 9)),
        lambda: socket.getaddrinfo("localhost", 9),
    ],
    ids=[
        "subprocess",
        "os.system",
        "posix_spawn",
        "posix_spawnp",
        "fork",
        "os.popen",
        "sqlite3",
        "sqlite3.dbapi2",
        "_sqlite3",
        "udp-sendto",
        "tcp-connect",
        "create_connection",
        "getaddrinfo",
    ],
)
def test_the_guard_refuses(reach: Callable[[], Any]) -> None:
    with pytest.raises(UnitTierViolation):
        reach()


def test_a_unix_socket_pair_stays_allowed() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
