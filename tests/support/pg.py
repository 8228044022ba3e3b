"""Store fixtures: a fresh SQLite file, and a fresh schema in a live PostgreSQL.

PostgreSQL is found at ``$VALISE_TEST_PG_DSN`` (default: trust auth on localhost).
When it can't be reached, tests that need it are skipped, except in CI
(``CI=true``), where they fail: the PostgreSQL backend is never skipped silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

PG_DSN = os.environ.get("VALISE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

_pg_down: str | None = None  # why PostgreSQL was unreachable, once we know


def _pg_unavailable(why: str) -> None:
    message = f"PostgreSQL at {PG_DSN} is unreachable: {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required in CI)")
    pytest.skip(message)


async def pg_admin() -> asyncpg.Connection:
    """A plain connection to the test database (skips or fails when it is down)."""
    global _pg_down
    if _pg_down is not None:
        _pg_unavailable(_pg_down)
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _pg_down = f"{type(exc).__name__}: {exc}"
        _pg_unavailable(_pg_down)
        raise  # unreachable: skip/fail raise


@asynccontextmanager
async def pg_test_schema() -> AsyncIterator[str]:
    """A new, empty schema, dropped (with everything in it) afterwards."""
    admin = await pg_admin()
    name = f"valise_test_{uuid.uuid4().hex[:16]}"
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await admin.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    async with pg_test_schema() as name:
        yield name


@pytest.fixture
async def pg_dsn() -> str:
    """The test database's DSN, once it is known to answer."""
    admin = await pg_admin()
    await admin.close()
    return PG_DSN


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of each backend."""
    if request.param == "sqlite":
        lite = await SqliteStore.open(sqlite_path)
        try:
            yield lite
        finally:
            await lite.close()
    else:
        async with pg_test_schema() as schema:
            pg = await PostgresStore.open(PG_DSN, schema=schema, max_size=4)
            try:
                yield pg
            finally:
                await pg.close()
