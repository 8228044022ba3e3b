"""The upgrade to per-destination delivery state (issue 11, store schema v11), on both
backends, from a v6 and from a v10 store.

Each test builds an old store the way test_store_delivery.py's version-1 upgrade does:
it applies the migration files up to ``start`` by hand, writes raw rows in every state
an old gateway could have left (an origin's and a hub's), opens the store with the
current code, and checks what design §2.4 says each row becomes, then that the store
goes on working (the missing receipt completes the message, expiry, the new webhook
kind).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.store._common import LATEST_VERSION, MIGRATIONS, load_sql
from gateway.store.audit_chain import ZERO_HASH, hash_of
from gateway.store.base import (
    Destination,
    EnvelopeRecord,
    ReceiptRecord,
    Store,
    WebhookEvent,
)
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore, _statements
from gateway.store.sqlite_audit import register_audit_functions
from tests.support.pg import PG_DSN, pg_test_schema

T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=7)
PARIS, HANOI, ROME, HQ = "M-PARIS", "M-HANOI", "M-ROME", "HQ"
LEGACY_HUB = "relayed before v11: receipts not tracked here"
LEGACY_HERE = "delivered here before v11"
NO_OWN = "no receipt of its own recorded before v11"


def mid(n: int) -> str:
    return f"0190000a-0000-7000-8000-{n:012x}"


def digest(n: int) -> bytes:
    return bytes([n]) * 32


# -- the old rows ---------------------------------------------------------------------


@dataclass
class OldStore:
    """Raw rows of an old store, by table, in insertion order."""

    start: int
    site: str
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def envelope(
        self,
        n: int,
        *,
        origin: str,
        destinations: tuple[str, ...],
        received_from: str | None = None,
        doc_class: str = "document",
        receipt: bytes | None = None,
        data: bytes | None = None,
        dig: bytes | None = None,
    ) -> str:
        body = data if data is not None else b"sealed-%d" % n
        self.rows.append(
            (
                "envelopes",
                {
                    "message_id": mid(n),
                    "origin": origin,
                    "destinations": destinations,
                    "digest": dig or digest(n),
                    "created": T0,
                    "expires": EXPIRES,
                    "priority": "routine",
                    "received_from": received_from,
                    "size": len(body),
                    "data": body,
                    "hop_ack": b"hop-ack-%d" % n,
                    "receipt": receipt,
                    "accepted_at": T0,
                    "doc_class": doc_class,
                    "chain": None,
                    "stamp_pending": False,
                    "escrow": None,
                },
            )
        )
        return mid(n)

    def delivery(
        self,
        n: int,
        peer: str,
        state: str,
        reason: str = "",
        *,
        attempts: int = 0,
        next_attempt: datetime | None = None,
        lease: tuple[str, datetime] | None = None,
    ) -> None:
        self.rows.append(
            (
                "deliveries",
                {
                    "message_id": mid(n),
                    "peer": peer,
                    "state": state,
                    "attempts": attempts,
                    "next_attempt": next_attempt,
                    "lease_owner": lease[0] if lease else None,
                    "lease_until": lease[1] if lease else None,
                    "last_reason": reason,
                    "updated_at": T0 + timedelta(minutes=1),
                    "rank": 3,
                    "created": T0,
                },
            )
        )
        self.history(n, peer, state, reason, T0 + timedelta(minutes=1))

    def inbound(self, n: int, state: str, reason: str = "") -> None:
        at = T0 + timedelta(minutes=2)
        self.rows.append(
            (
                "inbound",
                {"message_id": mid(n), "state": state, "received_at": T0, "updated_at": at},
            )
        )
        self.history(n, None, "received", "", T0)
        if state != "received":
            self.history(n, None, state, reason, at)

    def history(self, n: int, peer: str | None, state: str, reason: str, at: datetime) -> None:
        self.rows.append(
            (
                "history",
                {"message_id": mid(n), "peer": peer, "state": state, "reason": reason, "at": at},
            )
        )

    def add(self, table: str, **values: Any) -> None:
        self.rows.append((table, values))


def origin_rows(start: int) -> OldStore:
    """M-PARIS, a mission sending through its hub HQ."""
    s = OldStore(start, PARIS)
    s.envelope(1, origin=PARIS, destinations=(HQ,))
    s.delivery(1, HQ, "queued")
    s.envelope(2, origin=PARIS, destinations=(HANOI,))
    s.delivery(2, HQ, "sending", attempts=1, lease=("courier-1", T0 + timedelta(minutes=5)))
    s.envelope(3, origin=PARIS, destinations=(HQ, HANOI))
    s.delivery(3, HQ, "forwarded", "hop ack")
    s.envelope(4, origin=PARIS, destinations=(HANOI,))
    s.delivery(4, HQ, "deferred", "connection refused", attempts=3, next_attempt=T0)
    s.envelope(5, origin=PARIS, destinations=(HANOI,))
    s.delivery(5, HQ, "held", "key of M-HANOI revoked")
    s.envelope(6, origin=PARIS, destinations=(HQ, ROME))
    s.delivery(6, HQ, "failed", "expired")
    # A single destination's receipt.
    s.envelope(7, origin=PARIS, destinations=(HQ,), receipt=b"receipt-of-7")
    s.delivery(7, HQ, "delivered", "receipt")
    s.history(7, HQ, "delivered", "receipt", T0 + timedelta(minutes=5))
    # A circular whose one receipt (the v9 bug moved its hop to delivered) is attributed
    # by the receipt envelope kept here.
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=b"receipt-of-8-by-hanoi")
    s.delivery(8, HQ, "delivered", "receipt")
    s.envelope(
        80,
        origin=HANOI,
        destinations=(PARIS,),
        received_from=HQ,
        doc_class="receipt",
        data=b"receipt-of-8-by-hanoi",
    )
    s.inbound(80, "acked", "receipt")
    # A circular whose receipt envelope row is gone: nobody to attribute it to.
    s.envelope(9, origin=PARIS, destinations=(HQ, HANOI), receipt=b"receipt-of-9")
    s.delivery(9, HQ, "delivered", "receipt")
    # A receipt envelope sealed here: its "receipt" is its next hop's signed ack.
    s.envelope(10, origin=PARIS, destinations=(HQ,), doc_class="receipt", receipt=b"ack-10")
    s.delivery(10, HQ, "delivered", "receipt")
    # Addressed to this site too: delivered here, and forwarded to HQ.
    s.envelope(11, origin=PARIS, destinations=(PARIS, HQ))
    s.delivery(11, HQ, "forwarded")
    s.inbound(11, "available", "opened")
    # Pure destination items: no destination rows.
    s.envelope(20, origin=HQ, destinations=(PARIS,), received_from=HQ)
    s.inbound(20, "received")
    s.envelope(21, origin=HQ, destinations=(PARIS,), received_from=HQ)
    s.inbound(21, "available", "opened")
    s.envelope(22, origin=HQ, destinations=(PARIS,), received_from=HQ)
    s.inbound(22, "acked", "undeliverable: bad signature")
    s.add(
        "integrators",
        name="app",
        token_sha256="00" * 32,
        webhook_url="https://app.example/hook",
        webhook_secret="s",
        created_at=T0,
        revoked_at=None,
    )
    for k, kind in enumerate(("received", "delivered", "failed")):
        s.add(
            "webhooks",
            id=f"wh-{k}",
            integrator="app",
            kind=kind,
            message_id=mid(1),
            body=b"{}",
            state="pending",
            attempts=0,
            next_attempt=T0,
            lease_owner=None,
            lease_until=None,
            last_reason="",
            created_at=T0,
            updated_at=T0,
        )
    if start >= 7:
        s.add("tombstones", message_id=mid(30), expires=EXPIRES, deleted_at=T0, reason="rm")
    return s


def hub_rows(start: int) -> OldStore:
    """HQ, relaying for its missions and sending circulars of its own."""
    s = OldStore(start, HQ)
    # A circular relayed from M-PARIS, delivered here too.
    s.envelope(1, origin=PARIS, destinations=(HQ, HANOI, ROME), received_from=PARIS)
    s.delivery(1, HANOI, "forwarded", "hop ack")
    s.delivery(1, ROME, "deferred", "connection refused", attempts=2, next_attempt=T0)
    s.inbound(1, "available", "opened")
    s.envelope(2, origin=PARIS, destinations=(HANOI,), received_from=PARIS)
    s.delivery(2, HANOI, "failed", "refused by M-HANOI: bad signature")
    s.envelope(3, origin=PARIS, destinations=(HQ,), received_from=PARIS)
    s.inbound(3, "received")
    # A receipt relayed back to its origin: no destination rows.
    s.envelope(4, origin=HANOI, destinations=(PARIS,), received_from=HANOI, doc_class="receipt")
    s.delivery(4, PARIS, "forwarded", "hop ack")
    # HQ's own circular: v9 took M-PARIS's receipt for the whole message.
    s.envelope(5, origin=HQ, destinations=(PARIS, HANOI), receipt=b"receipt-of-5-by-paris")
    s.delivery(5, PARIS, "delivered", "receipt")
    s.delivery(5, HANOI, "delivered", "receipt")
    s.envelope(
        50,
        origin=PARIS,
        destinations=(HQ,),
        received_from=PARIS,
        doc_class="receipt",
        data=b"receipt-of-5-by-paris",
    )
    s.inbound(50, "acked", "receipt")
    # Relayed to one of its two destinations only (the other is not this hub's to reach).
    s.envelope(6, origin=PARIS, destinations=(HANOI, ROME), received_from=PARIS)
    s.delivery(6, HANOI, "forwarded", "hop ack")
    return s


# -- writing them into an old store, per backend ------------------------------------


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(v, tuple):
        return json.dumps(list(v))
    if isinstance(v, bool):
        return int(v)
    return v


def _build_sqlite(path: Path, old: OldStore) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    register_audit_functions(raw)
    raw.execute("PRAGMA foreign_keys = ON")
    raw.execute("BEGIN")
    for version, name in MIGRATIONS:
        if version > old.start:
            break
        for statement in _statements(load_sql("sqlite", name)):
            raw.execute(statement)
        raw.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version, _sqlite_value(T0)),
        )
    raw.execute("UPDATE audit_site SET site = ? WHERE id = 1", (old.site,))
    for table, values in old.rows:
        raw.execute(
            f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            [_sqlite_value(v) for v in values.values()],
        )
    raw.execute("COMMIT")
    raw.close()


async def _build_postgres(schema: str, old: OldStore) -> None:
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            for version, name in MIGRATIONS:
                if version > old.start:
                    break
                await conn.execute(load_sql("postgres", name))
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", version, T0
                )
            await conn.execute("UPDATE audit_site SET site = $1 WHERE id = 1", old.site)
            for table, values in old.rows:
                marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
                await conn.execute(
                    f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})",
                    *[list(v) if isinstance(v, tuple) else v for v in values.values()],
                )
    finally:
        await conn.close()


@dataclass
class Upgraded:
    store: Store
    read: Callable[[str, tuple[Any, ...]], Awaitable[Any]]  # one value, read raw
    versions: list[int]


@asynccontextmanager
async def upgraded(backend: str, old: OldStore, tmp_path: Path) -> AsyncIterator[Upgraded]:
    """The old store, opened (so migrated) with the current code."""
    if backend == "sqlite":
        path = tmp_path / f"{old.site}.db"
        _build_sqlite(path, old)

        async def read_lite(sql: str, args: tuple[Any, ...]) -> Any:
            c = sqlite3.connect(path)
            try:
                row = c.execute(re.sub(r"\$\d", "?", sql), args).fetchone()
            finally:
                c.close()
            return None if row is None else row[0]

        lite = await SqliteStore.open(path)
        try:
            yield Upgraded(lite, read_lite, [v for (v,) in _sqlite_versions(path)])
        finally:
            await lite.close()
        return
    async with pg_test_schema() as schema:
        await _build_postgres(schema, old)
        pg = await PostgresStore.open(PG_DSN, schema=schema, max_size=2)

        async def read_pg(sql: str, args: tuple[Any, ...]) -> Any:
            async with pg._pool.acquire() as c:
                return await c.fetchval(sql, *args)

        try:
            versions = list(
                await read_pg("SELECT array_agg(version ORDER BY version) FROM schema_version", ())
            )
            yield Upgraded(pg, read_pg, versions)
        finally:
            await pg.close()


def _sqlite_versions(path: Path) -> list[tuple[int]]:
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    finally:
        c.close()


async def raw(up: Upgraded, sql: str, *args: Any) -> Any:
    """One value read straight from the upgraded store's database."""
    return await up.read(sql, args)


async def check_audit_chain(store: Store, site: str) -> list[tuple[str, str, str]]:
    """The log links and every entry hashes to itself; its (action, subject, detail)s."""
    entries = await store.audit_entries(after=0, limit=10_000)
    prev = ZERO_HASH
    for e in entries:
        assert (e.prev, hash_of(e), e.actor) == (prev, e.hash, site), e.seq
        prev = e.hash
    return [(e.action, e.subject, e.detail) for e in entries]


# -- what they become -------------------------------------------------------------------


def view(dests: list[Destination]) -> list[tuple[str, str | None, str, str]]:
    return [(d.site, d.hop, d.state, d.reason) for d in dests]


BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgres"])
STARTS = pytest.mark.parametrize("start", [6, 10])


@BACKENDS
@STARTS
async def test_an_origin_store_upgrades_row_by_row(
    backend: str, start: int, tmp_path: Path
) -> None:
    async with upgraded(backend, origin_rows(start), tmp_path) as up:
        store = up.store
        assert up.versions == list(range(1, LATEST_VERSION + 1))
        ds = store.destinations
        assert view(await ds(mid(1))) == [(HQ, HQ, "queued", "")]
        assert view(await ds(mid(2))) == [(HANOI, HQ, "queued", "")]  # sending reads queued
        assert view(await ds(mid(3))) == [  # by site
            (HQ, HQ, "forwarded", "hop ack"),
            (HANOI, HQ, "forwarded", "hop ack"),
        ]
        assert view(await ds(mid(4))) == [(HANOI, HQ, "deferred", "connection refused")]
        (d4,) = await ds(mid(4))
        assert d4.attempts == 3 and d4.next_attempt == T0
        assert view(await ds(mid(5))) == [(HANOI, HQ, "held", "key of M-HANOI revoked")]
        assert view(await ds(mid(6))) == [
            (HQ, HQ, "failed", "expired"),
            (ROME, HQ, "failed", "expired"),
        ]
        # The single destination's receipt moved into its row, with the time recorded.
        (d7,) = await ds(mid(7))
        assert (d7.state, d7.receipt_for, d7.receipt_at) == (
            "delivered",
            digest(7),
            T0 + timedelta(minutes=5),
        )
        assert d7.receipt_digest is None  # v9 kept no digest: read from the bytes
        assert await store.destination_receipt(mid(7), HQ) == b"receipt-of-7"
        assert await store.receipt(mid(7)) == b"receipt-of-7"  # one destination: as before
        # The circular's receipt is M-HANOI's (its receipt envelope has those bytes); HQ
        # has none, so the hop the v9 bug marked delivered is forwarded again.
        d8_hq, d8_hanoi = await ds(mid(8))
        assert (d8_hanoi.site, d8_hanoi.state, d8_hanoi.receipt_digest) == (
            HANOI,
            "delivered",
            digest(80),
        )
        assert await store.destination_receipt(mid(8), HANOI) == b"receipt-of-8-by-hanoi"
        assert (d8_hq.site, d8_hq.state, d8_hq.reason) == (
            HQ,
            "forwarded",
            "v11: 1 of 2 destinations receipted",
        )
        last = (await store.history(mid(8)))[-1]
        assert (last.peer, last.state, last.reason) == (
            HQ,
            "forwarded",
            "v11: 1 of 2 destinations receipted",
        )
        # ... and the audit log has it, chained by the migration's own transaction.
        logged = await check_audit_chain(store, PARIS)
        assert [(a, m) for a, m, d in logged if "v11:" in d] == [
            ("forwarded", mid(8)),
            ("forwarded", mid(9)),
        ]
        # Unattributable: both open, the receipt kept where v9 had it.
        assert view(await ds(mid(9))) == [
            (HQ, HQ, "forwarded", "v11: 0 of 2 destinations receipted"),
            (HANOI, HQ, "forwarded", "v11: 0 of 2 destinations receipted"),
        ]
        assert await raw(up, "SELECT receipt FROM envelopes WHERE message_id = $1", mid(9)) == (
            b"receipt-of-9"
        )
        assert await raw(up, "SELECT receipt FROM envelopes WHERE message_id = $1", mid(8)) is None
        # A receipt envelope sealed here keeps its ack, and has no destination rows.
        assert await ds(mid(10)) == []
        assert await store.receipt(mid(10)) == b"ack-10"
        assert view(await ds(mid(11))) == [
            (HQ, HQ, "forwarded", ""),
            (PARIS, None, "delivered", LEGACY_HERE),
        ]
        for n in (20, 21, 22, 80):
            assert await ds(mid(n)) == []
        assert [(i.message_id, i.state) for i in await store.inbox()] == [
            (mid(11), "available"),
            (mid(20), "received"),
            (mid(21), "available"),
            (mid(22), "acked"),
            (mid(80), "acked"),
        ]
        for n, complete in ((1, False), (6, True), (7, True), (8, False), (9, False)):
            at = await raw(up, "SELECT completed_at FROM envelopes WHERE message_id = $1", mid(n))
            assert (at is not None) == complete, n
        assert sorted(w.kind for w in await store.webhooks()) == ["delivered", "failed", "received"]

        # It goes on working: HQ's receipt completes the circular, once.
        (got,) = await store.record_receipts(
            [ReceiptRecord(mid(8), HQ, digest(81), digest(8), b"receipt-of-8-by-hq")],
            now=T0 + timedelta(hours=1),
        )
        assert (got.status, got.delivered, got.total, got.completed) == ("recorded", 2, 2, True)
        (again,) = await store.record_receipts(
            [ReceiptRecord(mid(8), HANOI, digest(82), digest(8), b"another")],
            now=T0 + timedelta(hours=1),
        )
        assert (again.status, again.completed) == ("duplicate", False)
        assert await store.destination_receipt(mid(8), HANOI) == b"receipt-of-8-by-hanoi"
        # Expiry fails what is still open, forwarded-without-receipt included.
        closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
        by_id = {c.message_id: c for c in closed}
        assert set(by_id) == {mid(n) for n in (1, 2, 3, 4, 5, 9, 11)}
        assert by_id[mid(3)].sites == (HQ, HANOI) and by_id[mid(3)].completed
        assert by_id[mid(11)].sites == (HQ,)
        assert view(await ds(mid(9)))[0][2:] == ("failed", "expired")
        # ... and its hop with them, though v9's unattributed receipt is still kept.
        hops = {q.message_id: (q.state, q.dest_open, q.dest_total) for q in await store.queue()}
        assert hops[mid(9)] == ("failed", 0, 2)
        assert hops[mid(8)] == ("delivered", 0, 2)
        await store.webhook_enqueue(
            [WebhookEvent("wh-c", "app", "completed", mid(8), b"{}")], now=T0 + timedelta(hours=1)
        )
        assert "completed" in {w.kind for w in await store.webhooks(message_id=mid(8))}
        if start >= 7:
            record = EnvelopeRecord(
                mid(30), PARIS, (HQ,), digest(30), T0, EXPIRES, "routine", HQ, b"x"
            )
            acc = await store.accept(record, next_hops=[], deliver_here=True, hop_ack=None, now=T0)
            assert acc.deleted


@BACKENDS
@STARTS
async def test_a_hub_store_upgrades_row_by_row(backend: str, start: int, tmp_path: Path) -> None:
    async with upgraded(backend, hub_rows(start), tmp_path) as up:
        store = up.store
        ds = store.destinations
        assert view(await ds(mid(1))) == [
            (HQ, None, "delivered", LEGACY_HERE),
            (HANOI, HANOI, "forwarded", LEGACY_HUB),
            (ROME, ROME, "deferred", "connection refused"),
        ]
        assert view(await ds(mid(2))) == [
            (HANOI, HANOI, "failed", "refused by M-HANOI: bad signature")
        ]
        for n in (3, 4, 50):
            assert await ds(mid(n)) == []
        assert view(await ds(mid(6))) == [(HANOI, HANOI, "forwarded", LEGACY_HUB)]
        # HQ's own circular: M-PARIS's receipt is attributed; M-HANOI's hop, which v9
        # marked delivered with it, is forwarded again.
        (d_paris, d_hanoi) = sorted(await ds(mid(5)), key=lambda d: d.site != PARIS)
        assert (d_paris.site, d_paris.hop, d_paris.state, d_paris.receipt_digest) == (
            PARIS,
            PARIS,
            "delivered",
            digest(50),
        )
        assert (d_hanoi.state, d_hanoi.reason) == (
            "forwarded",
            "v11: 0 of 1 destinations receipted",
        )
        assert [(a, m) for a, m, d in await check_audit_chain(store, HQ) if "v11:" in d] == [
            ("forwarded", mid(5))
        ]
        # Expiry at the hub fails what its own hops failed, never a forwarded relay.
        closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
        assert {(c.message_id, c.sites) for c in closed} >= {(mid(1), (ROME,))}
        assert view(await ds(mid(1)))[1] == (HANOI, HANOI, "forwarded", LEGACY_HUB)
        assert view(await ds(mid(1)))[2][2:] == ("failed", "expired")
