"""System tests: real `valise serve` processes on loopback (gateway/demo/network.py),
real PostgreSQL, real tools (openssl, swaks, curl, haproxy), kill -9. Every test here
is marked ``slow``: ``make test-fast`` leaves them out, ``make test`` runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pg import pg_dsn, pg_schema, sqlite_path, store  # noqa: F401 - fixtures

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.slow)
