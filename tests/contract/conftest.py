"""The store contract: one suite, every backend. Each test taking ``store`` runs on a
fresh, empty store of each backend: ``memory`` (gateway/store/memory.py), ``sqlite`` (a
new file) and ``postgres`` (a new schema in the live test database, dropped after the
test). PostgreSQL is found and skipped as in tests/support/pg.py: when it
can't be reached its runs are skipped, except in CI (``CI=true``), where they fail.

Every test collected here is marked ``contract`` (``pytest -m contract``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.store.base import Store
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.support.pg import PG_DSN, pg_test_schema

BACKENDS = ("memory", "sqlite", "postgres")
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.contract)


@asynccontextmanager
async def open_store(backend: str, sqlite_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of ``backend``, closed (and its schema dropped) afterwards."""
    if backend == "memory":
        mem = await MemoryStore.open()
        try:
            yield mem
        finally:
            await mem.close()
    elif backend == "sqlite":
        lite = await SqliteStore.open(sqlite_path)
        try:
            yield lite
        finally:
            await lite.close()
    elif backend == "postgres":
        async with pg_test_schema() as schema:
            pg = await PostgresStore.open(PG_DSN, schema=schema, max_size=4)
            try:
                yield pg
            finally:
                await pg.close()
    else:
        raise ValueError(f"unknown store backend {backend!r}")


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of this run (for a test that opens stores of its own)."""
    return str(request.param)


@pytest.fixture
async def store(backend: str, sqlite_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of each backend."""
    async with open_store(backend, sqlite_path) as s:
        yield s
