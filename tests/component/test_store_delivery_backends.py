"""What only one store backend has, of batched delivery (the backend-neutral tests are
tests/contract/test_store_delivery.py): SQLite's claim reads its index, each backend's
change notices from another process, and the upgrade of a version 1 store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from gateway.store._common import LATEST_VERSION, load_sql
from gateway.store.base import Acceptance, Store
from gateway.store.postgres import PostgresStore
from gateway.store.queries import load
from gateway.store.sqlite import SqliteStore, _statements
from tests.contract.helpers import PARIS, T0, mid, put, record
from tests.support.pg import PG_DSN, pg_test_schema


def test_sqlite_claim_reads_the_claim_index(sqlite_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    for name in ("schema.sql", "v2_claim_order.sql"):
        for statement in _statements(load_sql("sqlite", name)):
            conn.execute(statement)
    due = load("sqlite", "claim").claim.sql  # SQLite's claim reads the due rows
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + due, {"peer": PARIS, "now": "x", "limit": 64}
    ).fetchall()
    details = " ".join(str(r[-1]) for r in plan)
    assert "deliveries_claim" in details and "TEMP B-TREE" not in details.split("UNION")[0]


# -- watch ---------------------------------------------------------------------------


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def test_sqlite_watch_sees_commits_of_other_connections_only(sqlite_path: Path) -> None:
    a = await SqliteStore.open(sqlite_path)
    b = await SqliteStore.open(sqlite_path)
    seen = asyncio.Event()
    stop = await a.watch(seen.set)
    try:
        await put(a, 1)  # its own commit
        assert not await _wait(seen, 0.4)
        await put(b, 2)
        assert await _wait(seen, 2)
    finally:
        await stop()
        await a.close()
        await b.close()


async def test_postgres_watch_hears_accepts_of_other_processes(pg_schema: str) -> None:
    a = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    b = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    seen = asyncio.Event()
    stop = await a.watch(seen.set)
    try:
        await b.accept_many([(record(1), [PARIS], False, None)], now=T0)  # relayed: no notice
        assert not await _wait(seen, 0.4)
        await put(b, 2)
        assert await _wait(seen, 2)
    finally:
        await stop()
        await a.close()
        await b.close()


# -- upgrading a version 1 store ------------------------------------------------------

_V1_ROWS = [
    "INSERT INTO schema_version (version, applied_at) VALUES (1, '2026-12-01T09:00:00+00:00')",
    "INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,"
    " priority, received_from, size, data, hop_ack, receipt, accepted_at)"
    " VALUES ('{m1}', 'HQ', {dest}, {digest}, '2026-12-01T09:05:00+00:00',"
    " '2026-12-08T09:00:00+00:00', 'flash', NULL, 1, {data}, NULL, NULL,"
    " '2026-12-01T09:00:00+00:00')",
    "INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,"
    " priority, received_from, size, data, hop_ack, receipt, accepted_at)"
    " VALUES ('{m2}', 'HQ', {dest}, {digest}, '2026-12-01T09:00:00+00:00',"
    " '2026-12-08T09:00:00+00:00', 'routine', NULL, 1, {data}, NULL, NULL,"
    " '2026-12-01T09:00:00+00:00')",
    "INSERT INTO deliveries (message_id, peer, state, attempts, updated_at)"
    " VALUES ('{m1}', 'M-PARIS', 'queued', 0, '2026-12-01T09:00:00+00:00')",
    "INSERT INTO deliveries (message_id, peer, state, attempts, updated_at)"
    " VALUES ('{m2}', 'M-PARIS', 'queued', 0, '2026-12-01T09:00:00+00:00')",
]


def _v1_rows(dest: str, digest: str, data: str) -> list[str]:
    return [s.format(m1=mid(1), m2=mid(2), dest=dest, digest=digest, data=data) for s in _V1_ROWS]


async def _check_upgraded(store: Store) -> None:
    got = await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    assert [c.message_id for c in got] == [mid(1), mid(2)]  # flash first, then by age
    assert all(c.chain is None and c.doc_class == "document" for c in got)
    assert [q.message_id for q in await store.queue()] == [mid(1), mid(2)]
    assert await store.accept(
        record(3), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0
    ) == Acceptance(True, None)


async def test_sqlite_upgrades_a_version_1_store(sqlite_path: Path) -> None:
    raw = sqlite3.connect(sqlite_path)
    with raw:
        for statement in _statements(load_sql("sqlite", "schema.sql")):
            raw.execute(statement)
        for statement in _v1_rows("'[\"M-PARIS\"]'", "x'00'", "x'00'"):
            raw.execute(statement)
    raw.close()
    store = await SqliteStore.open(sqlite_path)
    try:
        await _check_upgraded(store)
    finally:
        await store.close()
    raw = sqlite3.connect(sqlite_path)
    versions = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    raw.close()
    assert versions == [(v,) for v in range(1, LATEST_VERSION + 1)]


async def test_postgres_upgrades_a_version_1_store() -> None:
    async with pg_test_schema() as schema:
        conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
        try:
            await conn.execute(load_sql("postgres", "schema.sql"))
            for statement in _v1_rows("ARRAY['M-PARIS']", "'\\x00'::bytea", "'\\x00'::bytea"):
                await conn.execute(statement)
        finally:
            await conn.close()
        store = await PostgresStore.open(PG_DSN, schema=schema, max_size=2)
        try:
            await _check_upgraded(store)
            async with store._pool.acquire() as c:
                assert await c.fetchval("SELECT max(version) FROM schema_version") == LATEST_VERSION
        finally:
            await store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_files_exist(backend: str) -> None:
    assert "deliveries_claim" in load_sql(backend, "v2_claim_order.sql")
