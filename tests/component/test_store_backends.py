"""What only one store backend has, beside the contract suite (tests/contract/): a SQLite
file reopened, shared by two stores and refusing a newer schema; PostgreSQL claims
shared by several pools, its session settings and schema creation; and the two SQL
schemas agreeing table by table. (Moved here from test_store.py, whose backend-neutral
tests are now tests/contract/test_store.py.)
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest

from gateway.store._common import LATEST_VERSION, MIGRATIONS, load_sql
from gateway.store.base import Acceptance, StoreError
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore, _statements
from gateway.store.sqlite_audit import register_audit_functions
from tests.contract.helpers import HANOI, PARIS, T0, mid, put, record, steps
from tests.support.pg import PG_DSN

# -- SQLite specifics -----------------------------------------------------------------


async def test_sqlite_reopen_sees_committed_data(sqlite_path: Path) -> None:
    first = await SqliteStore.open(sqlite_path)
    await put(first, 1, (PARIS, HANOI), here=True)
    await first.claim(peer=PARIS, owner="a", limit=1, lease_seconds=60, now=T0)
    await first.delivered(mid(1), receipt=b"r", now=T0)
    queue, history = await first.queue(), await first.history(mid(1))
    await first.close()
    second = await SqliteStore.open(sqlite_path)
    try:
        assert await second.get_envelope(mid(1)) == record(1)
        assert await second.queue() == queue
        assert await second.history(mid(1)) == history
        assert await second.receipt(mid(1)) == b"r"
        assert [i.message_id for i in await second.inbox()] == [mid(1)]
        again = await second.accept(
            record(1), next_hops=[PARIS], deliver_here=False, hop_ack=b"x", now=T0
        )
        assert again == Acceptance(False, b"ack-1")
    finally:
        await second.close()
    raw = sqlite3.connect(sqlite_path)
    try:
        versions = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v, _ in MIGRATIONS]
    finally:
        raw.close()


async def test_sqlite_two_stores_on_one_file_share_the_work(sqlite_path: Path) -> None:
    a = await SqliteStore.open(sqlite_path)
    b = await SqliteStore.open(sqlite_path)  # e.g. the daemon and the admin CLI
    try:
        await a.accept_many([(record(i), [PARIS], False, None) for i in range(60)], now=T0)

        async def worker(s: SqliteStore, name: str) -> list[str]:
            mine: list[str] = []
            while got := await s.claim(peer=PARIS, owner=name, limit=4, lease_seconds=60, now=T0):
                mine += [c.message_id for c in got]
            return mine

        results = await asyncio.gather(worker(a, "a"), worker(b, "b"))
        claimed = [m for r in results for m in r]
        assert sorted(claimed) == sorted(mid(i) for i in range(60))
        assert await b.depths() == {(PARIS, "sending"): 60}
    finally:
        await a.close()
        await b.close()


async def test_sqlite_refuses_a_newer_schema(sqlite_path: Path) -> None:
    s = await SqliteStore.open(sqlite_path)
    await s.close()
    raw = sqlite3.connect(sqlite_path)
    with raw:
        raw.execute("INSERT INTO schema_version VALUES (99, '2030-01-01T00:00:00.000000+00:00')")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore.open(sqlite_path)


async def test_sqlite_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteStore.open(tmp_path / "missing-dir" / "store.db")


# -- PostgreSQL specifics -------------------------------------------------------------


async def test_postgres_concurrent_claims_never_overlap(pg_schema: str) -> None:
    a = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=5)
    b = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=5)
    try:
        n = 300
        batch = [(record(i), [PARIS], False, None) for i in range(n)]
        await a.accept_many(batch, now=T0)

        async def worker(s: PostgresStore, name: str) -> list[str]:
            mine: list[str] = []
            while got := await s.claim(peer=PARIS, owner=name, limit=7, lease_seconds=60, now=T0):
                mine += [c.message_id for c in got]
            return mine

        results = await asyncio.gather(
            *(worker(s, f"{s_name}{k}") for s, s_name in ((a, "a"), (b, "b")) for k in range(4))
        )
        claimed = [m for r in results for m in r]
        assert len(claimed) == n and set(claimed) == {mid(i) for i in range(n)}
        assert sum(1 for r in results if r) > 1  # the work really was shared
        assert await a.depths() == {(PARIS, "sending"): n}
        history = await b.history(mid(0))
        assert steps(history) == [(PARIS, "queued", ""), (PARIS, "sending", "")]
    finally:
        await a.close()
        await b.close()


async def test_postgres_overrides_synchronous_commit_off(pg_schema: str) -> None:
    sep = "&" if "?" in PG_DSN else "?"
    s = await PostgresStore.open(f"{PG_DSN}{sep}synchronous_commit=off", schema=pg_schema)
    try:
        for _ in range(3):  # on every pooled session, also after a pool reset
            assert (await s.durability())["synchronous_commit"] == "on"
    finally:
        await s.close()


async def test_postgres_open_creates_the_schema_and_migrates_once(pg_dsn: str) -> None:
    name = f"valise_new_{uuid.uuid4().hex[:12]}"
    try:
        # Two processes starting at once: one creates and migrates, the other waits.
        first, second = await asyncio.gather(
            PostgresStore.open(pg_dsn, schema=name), PostgresStore.open(pg_dsn, schema=name)
        )
        try:
            await put(first, 1)
            assert await second.get_envelope(mid(1)) == record(1)
            async with second._pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM schema_version") == LATEST_VERSION
        finally:
            await first.close()
            await second.close()
        third = await PostgresStore.open(pg_dsn, schema=name)
        try:
            assert await third.get_envelope(mid(1)) == record(1)
        finally:
            await third.close()
    finally:
        conn = await asyncpg.connect(pg_dsn, timeout=5)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


async def test_postgres_bad_schema_name_and_unreachable_server() -> None:
    with pytest.raises(StoreError, match="schema name"):
        await PostgresStore.open(PG_DSN, schema='x"; DROP TABLE y; --')
    with pytest.raises(StoreError, match="connect"):
        await PostgresStore.open("postgresql://postgres@127.0.0.1:1/test")


# -- the two schemas agree --------------------------------------------------------------


def _sqlite_tables() -> dict[str, tuple[list[str], list[str], set[str]]]:
    """table -> (columns in order, primary key columns, NOT NULL columns)."""
    conn = sqlite3.connect(":memory:")
    register_audit_functions(conn)  # v11's data mapping writes history (audited)
    for _, name in MIGRATIONS:
        for statement in _statements(load_sql("sqlite", name)):
            conn.execute(statement)
    out = {}
    names = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (table,) in names:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        cols = [r[1] for r in info]
        pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        # A SQLite primary key column is NOT NULL in practice (rowid or declared).
        notnull = {r[1] for r in info if r[3] or r[5]}
        out[table] = (cols, pk, notnull)
    conn.close()
    return out


async def test_sqlite_and_postgres_schemas_define_the_same_tables(pg_schema: str) -> None:
    s = await PostgresStore.open(PG_DSN, schema=pg_schema)
    try:
        async with s._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
                " WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
                pg_schema,
            )
            pks = await conn.fetch(
                "SELECT tc.table_name, kcu.column_name"
                " FROM information_schema.table_constraints tc"
                " JOIN information_schema.key_column_usage kcu"
                "  ON kcu.constraint_name = tc.constraint_name"
                "  AND kcu.table_schema = tc.table_schema"
                " WHERE tc.table_schema = $1 AND tc.constraint_type = 'PRIMARY KEY'"
                " ORDER BY tc.table_name, kcu.ordinal_position",
                pg_schema,
            )
    finally:
        await s.close()
    pg: dict[str, tuple[list[str], list[str], set[str]]] = {}
    for r in rows:
        cols, _pk, notnull = pg.setdefault(r["table_name"], ([], [], set()))
        cols.append(r["column_name"])
        if r["is_nullable"] == "NO":
            notnull.add(r["column_name"])
    for r in pks:
        pg[r["table_name"]][1].append(r["column_name"])
    lite = _sqlite_tables()
    assert set(lite) == {
        "schema_version",
        "envelopes",
        "deliveries",
        "inbound",
        "history",
        "integrators",
        "submissions",
        "webhooks",
        "audit",
        "audit_checkpoints",
        "audit_site",
        "audit_flush",
        "timestamps",
        "directory_fetches",
        "tombstones",
        "enrollments",
        "tls_certificates",
        "audit_witness",
        "destinations",
        "superseded_heads",
    }
    assert pg == lite


def test_schema_files_name_the_same_indexes() -> None:
    def indexes(backend: str) -> set[tuple[str, str]]:
        """The indexes the migrations leave, in order: created, less those dropped."""
        out: dict[str, str] = {}
        for _, name in MIGRATIONS:
            sql = load_sql(backend, name)
            for m in re.finditer(r"CREATE INDEX (\w+) ON (\w+)|DROP INDEX (\w+)", sql):
                if m[3]:
                    del out[m[3]]
                else:
                    out[m[1]] = m[2]
        return set(out.items())

    assert indexes("sqlite") == indexes("postgres") != set()
    assert ("deliveries_claim", "deliveries") in indexes("sqlite")


def test_migration_files_are_shipped_for_both_backends() -> None:
    assert [v for v, _ in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    for _, name in MIGRATIONS:
        assert load_sql("sqlite", name) and load_sql("postgres", name)
