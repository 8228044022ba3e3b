"""The unit tier: no network socket, no subprocess, no database.

Every test under tests/unit runs with the guard below: opening an IP socket, starting
a process or connecting to SQLite or PostgreSQL raises UnitTierViolation, so a test
that needs one of them says so by living in tests/component (in-process servers on
loopback, databases) or tests/system (real processes). AF_UNIX socket pairs stay
allowed: the event loop wakes itself with one.

It is a tripwire for the ways our code and its libraries reach out (socket methods,
name lookups, subprocess, os.system/spawn/fork, sqlite3 and asyncpg connects), not a
sandbox: C-level types (``_socket.socket``, ``sqlite3.Connection``) cannot be patched,
and a test that calls them directly on purpose is not caught (review 13, adv13 a3).
"""

from __future__ import annotations

import _sqlite3  # type: ignore[import-not-found]
import os
import socket
import sqlite3
import sqlite3.dbapi2
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class UnitTierViolation(AssertionError):
    """A unit test reached outside its process (network, subprocess, database)."""


def _refuse(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> None:
        raise UnitTierViolation(
            f"a unit test may not {what}: move it to tests/component or tests/system"
        )

    return refuse


@pytest.fixture(autouse=True)
def _unit_tier_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("connect", "connect_ex", "bind", "sendto", "sendmsg"):
        original = getattr(socket.socket, name)

        def guarded(self: socket.socket, *args: Any, _orig: Any = original, **kw: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise UnitTierViolation(
                    "a unit test may not open a network socket: "
                    "move it to tests/component or tests/system"
                )
            return _orig(self, *args, **kw)

        monkeypatch.setattr(socket.socket, name, guarded)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse("look up a network name"))
    monkeypatch.setattr(socket, "create_connection", _refuse("open a network socket"))
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    for name in ("system", "posix_spawn", "posix_spawnp", "fork", "forkpty", "popen"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse("start a process"))
    for module in (sqlite3, sqlite3.dbapi2, _sqlite3):
        monkeypatch.setattr(module, "connect", _refuse("open a SQLite database"))
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dev dependency
        pass
    else:
        monkeypatch.setattr(asyncpg, "connect", _refuse("connect to PostgreSQL"))
        monkeypatch.setattr(asyncpg, "create_pool", _refuse("connect to PostgreSQL"))
    yield
