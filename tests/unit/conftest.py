"""The unit tier: no network socket, no subprocess, no database.

Every test under tests/unit runs with the guard below: opening an IP socket, starting
a process or connecting to SQLite or PostgreSQL raises UnitTierViolation, so a test
that needs one of them says so by living in tests/component (in-process servers on
loopback, databases) or tests/system (real processes). AF_UNIX socket pairs stay
allowed: the event loop wakes itself with one.
"""

from __future__ import annotations

import socket
import sqlite3
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
    for name in ("connect", "connect_ex", "bind"):
        original = getattr(socket.socket, name)

        def guarded(self: socket.socket, *args: Any, _orig: Any = original, **kw: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise UnitTierViolation(
                    "a unit test may not open a network socket: "
                    "move it to tests/component or tests/system"
                )
            return _orig(self, *args, **kw)

        monkeypatch.setattr(socket.socket, name, guarded)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    monkeypatch.setattr(sqlite3, "connect", _refuse("open a SQLite database"))
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dev dependency
        pass
    else:
        monkeypatch.setattr(asyncpg, "connect", _refuse("connect to PostgreSQL"))
        monkeypatch.setattr(asyncpg, "create_pool", _refuse("connect to PostgreSQL"))
    yield
