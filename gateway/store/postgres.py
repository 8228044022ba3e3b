"""The PostgreSQL store: an asyncpg pool; several gateway processes may share one database.

Each mutating call is one transaction (retried on a deadlock or serialization
failure, which PostgreSQL resolves by aborting one side). Outbound work is claimed
with ``SELECT … FOR UPDATE SKIP LOCKED`` and leased through the ``lease_owner`` /
``lease_until`` columns, so concurrent claimers never get the same delivery and a
dead sender's work comes back once its lease runs out.

Commits are durable when they return: sessions run with ``synchronous_commit`` on
(a server, database or role default of ``off`` is overridden for the store's
sessions at connect time; ``local``, ``remote_write`` and ``remote_apply`` are
kept). :meth:`durability` reports what the sessions actually run with.

``schema`` puts the store's tables in that schema (created if missing) by making it
the sessions' ``search_path``; without it the server's search_path decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from gateway.store import migrate_v11
from gateway.store._common import (
    EXPIRED_REASON,
    LATEST_VERSION,
    MIGRATIONS,
    RECHECK_REASON,
    TOMBSTONE_GRACE,
    UNDELIVERED,
    aware,
    check_record,
    load_sql,
    migration_parts,
)
from gateway.store.audit import Audit
from gateway.store.base import (
    Acceptance,
    Claimed,
    Closed,
    EnvelopeRecord,
    OutState,
    ReceiptRecord,
    StoreError,
)
from gateway.store.destinations import Destinations
from gateway.store.driver_postgres import ERRORS as _ERRORS
from gateway.store.driver_postgres import PostgresDriver
from gateway.store.enroll import Enroll
from gateway.store.integrators import Integrators
from gateway.store.kept import KeptReceiptsRecheck
from gateway.store.operator import Operator
from gateway.store.postgres_common import (
    CLAIM,
    FORWARDED,
    PEERS,
    AcceptItem,
    Conn,
    accept_rows,
    fail_undelivered,
    opt_utc,
    set_state,
    utc,
)
from gateway.store.postgres_destinations import (
    close_open,
    record_acks,
    record_receipt_rows,
)
from gateway.store.postgres_inbound import PostgresInbound
from gateway.store.trust import Trust

if TYPE_CHECKING:
    from gateway.store.base import Store

log = logging.getLogger("valise.store")
T = TypeVar("T")

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT = 10.0


def notify_channel(schema: str | None) -> str:
    """The LISTEN/NOTIFY channel of a store (an identifier: at most 63 bytes)."""
    name = f"valise_work_{schema}" if schema else "valise_work"
    if len(name) > 63:
        name = "valise_work_" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return name


async def _create_pool(dsn: str, settings: dict[str, str], min_size: int, max_size: int) -> Any:
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            server_settings=dict(settings),
        )
    except _ERRORS as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc


# Expiry's hop rows: every undelivered one of an expired message; at the origin, also a
# forwarded one with a destination through it still open (for a message without
# destination rows: never receipted).
_EXPIRE = """
WITH moved AS (
    UPDATE deliveries d SET state = 'failed', lease_owner = NULL,
        lease_until = NULL, last_reason = $2, updated_at = $1
    FROM envelopes e
    WHERE e.message_id = d.message_id AND e.expires <= $1
      AND (d.state = ANY($3::text[])
           OR (d.state = 'forwarded' AND e.received_from IS NULL
               AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id
                            AND t.hop = d.peer AND t.outcome = 'open' AND t.reason <> $4)
                    OR (e.receipt IS NULL AND NOT EXISTS (
                        SELECT 1 FROM destinations t WHERE t.message_id = d.message_id)))))
    RETURNING d.message_id, d.peer
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, peer, 'failed', $2, $1 FROM moved ORDER BY message_id, peer
)
SELECT message_id, peer FROM moved ORDER BY message_id, peer
"""

# The envelope rows expire() changes something of (locked first: see
# postgres_destinations.py), and no other: a hub's relays forwarded long ago stay
# unlocked.
_LOCK_EXPIRED = """
SELECT e.message_id FROM envelopes e
WHERE e.expires <= $1
  AND (EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id
               AND d.state = ANY($2::text[]))
       OR (e.received_from IS NULL AND e.completed_at IS NULL
           AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id
                       AND t.outcome = 'open' AND t.reason <> $3))
       OR (e.received_from IS NULL AND e.receipt IS NULL
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = e.message_id
                       AND d.state = 'forwarded')
           AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id)))
ORDER BY e.message_id
FOR NO KEY UPDATE OF e
"""


def _step(name: str) -> Callable[[Conn], Awaitable[None]]:
    """The Python step of a migration file (``-- @step NAME``). Raises StoreError."""
    steps = {migrate_v11.STEP: migrate_v11.postgres_step}
    if name not in steps:
        raise StoreError(f"unknown migration step {name!r}")
    return steps[name]


class PostgresStore(
    PostgresInbound,
    Operator,
    Integrators,
    Trust,
    Audit,
    Enroll,
    Destinations,
    KeptReceiptsRecheck,
):
    """:class:`~gateway.store.base.Store` on a PostgreSQL database (one schema)."""

    _db: PostgresDriver

    def __init__(
        self, pool: Any, schema: str | None, dsn: str = "", settings: dict[str, str] | None = None
    ):
        self._db = PostgresDriver(pool)
        self.schema = schema
        self._dsn = dsn
        self._settings = dict(settings or {})
        self.channel = notify_channel(schema)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresStore:
        """Connect a pool to ``dsn`` and create or migrate the schema."""
        settings = {"application_name": "valise-gateway"}
        if schema is not None:
            if SCHEMA_RE.fullmatch(schema) is None:
                raise StoreError(f"schema name {schema!r} must match {SCHEMA_RE.pattern}")
            settings["search_path"] = schema
        pool = await _create_pool(dsn, settings, min_size, max_size)
        try:
            sync = await pool.fetchval("SELECT current_setting('synchronous_commit')")
        except _ERRORS as exc:
            await pool.close()
            raise StoreError(f"cannot query PostgreSQL: {exc}") from exc
        if sync == "off":
            # The server or role default would acknowledge commits before they are on
            # disk: run the store's sessions with synchronous_commit on instead.
            await pool.close()
            settings["synchronous_commit"] = "on"
            pool = await _create_pool(dsn, settings, min_size, max_size)
        store = cls(pool, schema, dsn, settings)
        try:
            await store._write(store._migrate)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self, conn: Conn) -> None:
        """Apply the schema if there is no version table; then any later migrations."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('valise.store.migrate:' || $1::text))",
            self.schema or "",
        )
        if self.schema is not None and not await conn.fetchval(
            "SELECT true FROM pg_namespace WHERE nspname = $1", self.schema
        ):
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
        present = await conn.fetchval(
            "SELECT true FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_version'"
        )
        current = 0
        if present:
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        if current > LATEST_VERSION:
            raise StoreError(
                f"store schema version {current} is newer than this software ({LATEST_VERSION})"
            )
        for version, name in MIGRATIONS:
            if version <= current:
                continue
            for part, step in migration_parts(load_sql("postgres", name)):
                await conn.execute(part)
                if step is not None:
                    await _step(step)(conn)
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, now())", version
            )

    async def close(self) -> None:
        await self._db.close()

    @property
    def _pool(self) -> Any:
        """The asyncpg pool (None once closed)."""
        return self._db.pool

    # -- plumbing (the mixins not yet on the shared driver code) ----------------
    def _live(self) -> Any:
        return self._db.live()

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self._db.call(fn)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; rerun it if PostgreSQL aborted it as a deadlock
        or serialization victim (nothing of it was committed then)."""
        return await self._db.call_write(fn)

    # -- accepting --------------------------------------------------------------
    async def accept(
        self,
        record: EnvelopeRecord,
        *,
        next_hops: Sequence[str],
        deliver_here: bool,
        hop_ack: bytes | None,
        now: datetime,
        held: str | None = None,
    ) -> Acceptance:
        check_record(record)
        at = aware(now)
        item: AcceptItem = (record, list(next_hops), deliver_here, hop_ack)

        async def tx(conn: Conn) -> Acceptance:
            (result,) = await accept_rows(conn, [item], at)
            if result.new and held is not None:
                await set_state(
                    conn,
                    record.message_id,
                    to=OutState.HELD.value,
                    from_states=[OutState.QUEUED.value],
                    reason=held,
                    at=at,
                )
            elif result.new and next_hops:  # wake the site's dispatcher (see watch)
                await conn.execute("SELECT pg_notify($1, '')", self.channel)
            return result

        return await self._write(tx)

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        batch: list[AcceptItem] = [(r, list(h), d, a) for r, h, d, a in items]
        for record, _, _, _ in batch:
            check_record(record)
        at = aware(now)
        if not batch:
            return []

        async def tx(conn: Conn) -> list[Acceptance]:
            return await accept_rows(conn, batch, at)

        return await self._write(tx)

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None:
        async def q(conn: Conn) -> EnvelopeRecord | None:
            r = await conn.fetchrow(
                "SELECT message_id, origin, destinations, digest, created, expires, priority,"
                " received_from, data, doc_class, chain FROM envelopes WHERE message_id = $1",
                message_id,
            )
            if r is None:
                return None
            return EnvelopeRecord(
                message_id=r["message_id"],
                origin=r["origin"],
                destinations=tuple(r["destinations"]),
                digest=r["digest"],
                created=utc(r["created"]),
                expires=utc(r["expires"]),
                priority=r["priority"],
                received_from=r["received_from"],
                data=r["data"],
                doc_class=r["doc_class"],
                chain=r["chain"],
            )

        return await self._read(q)

    # -- outbound work ----------------------------------------------------------
    async def claim(
        self, *, peer: str, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[Claimed]:
        at = aware(now)
        until = at + timedelta(seconds=lease_seconds)
        if limit <= 0:
            return []

        async def tx(conn: Conn) -> list[Claimed]:
            rows = await conn.fetch(CLAIM, peer, at, limit, owner, until)
            return [
                Claimed(
                    r["message_id"],
                    r["peer"],
                    r["attempts"],
                    r["data"],
                    utc(r["expires"]),
                    r["origin"],
                    r["digest"],
                    r["doc_class"],
                    r["chain"],
                )
                for r in rows
            ]

        return await self._write(tx)

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        at = aware(now)

        async def q(conn: Conn) -> list[str]:
            return [r["peer"] for r in await conn.fetch(PEERS, at)]

        return await self._read(q)

    async def next_due(self, *, now: datetime) -> datetime | None:
        aware(now)

        async def q(conn: Conn) -> datetime | None:
            first = await conn.fetchval(
                "SELECT min(next_attempt) FROM deliveries WHERE state = 'deferred'"
            )
            return opt_utc(first)

        return await self._read(q)

    async def forwarded(
        self,
        items: Sequence[tuple[str, str]],
        *,
        owner: str,
        now: datetime,
        reason: str = "",
        receipts: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        at = aware(now)
        pairs = list(items)
        proofs = list(receipts)
        if not pairs and not proofs:
            return

        async def tx(conn: Conn) -> None:
            if pairs:
                await conn.execute(
                    FORWARDED, [m for m, _ in pairs], [p for _, p in pairs], owner, reason, at
                )
            await record_acks(conn, proofs, at)

        await self._write(tx)

    async def defer(
        self,
        message_id: str,
        peer: str,
        *,
        owner: str,
        reason: str,
        next_attempt: datetime,
        now: datetime,
    ) -> None:
        at = aware(now)
        when = aware(next_attempt)

        async def tx(conn: Conn) -> None:
            await conn.execute(
                "WITH moved AS ("
                "  UPDATE deliveries SET state = 'deferred', next_attempt = $4, lease_owner = NULL,"
                "   lease_until = NULL, last_reason = $5, updated_at = $6"
                "  WHERE message_id = $1 AND peer = $2 AND state = 'sending' AND lease_owner = $3"
                "  RETURNING message_id, peer"
                ") INSERT INTO history (message_id, peer, state, reason, at)"
                " SELECT message_id, peer, 'deferred', $5, $6 FROM moved",
                message_id,
                peer,
                owner,
                when,
                reason,
                at,
            )

        await self._write(tx)

    async def fail(
        self, message_id: str, peer: str | None, *, reason: str, now: datetime
    ) -> Closed | None:
        at = aware(now)

        async def tx(conn: Conn) -> Closed | None:
            return await fail_undelivered(conn, message_id, peer, reason, at)

        return await self._write(tx)

    async def expire(self, *, now: datetime) -> list[Closed]:
        at = aware(now)

        async def tx(conn: Conn) -> list[Closed]:
            # The envelope rows first (postgres_destinations.py: lock order).
            await conn.execute(_LOCK_EXPIRED, at, list(UNDELIVERED), RECHECK_REASON)
            rows = await conn.fetch(_EXPIRE, at, EXPIRED_REASON, list(UNDELIVERED), RECHECK_REASON)
            failed: dict[str, list[str]] = {}
            for r in rows:
                failed.setdefault(r["message_id"], []).append(r["peer"])
            # The origin closes every open destination of an expired message (forwarded
            # ones too); a hub only those whose hop row failed now. A row waiting for its
            # kept receipt's re-check (RECHECK_REASON) waits for it (close_open).
            origin = {
                r["message_id"]
                for r in await conn.fetch(
                    "SELECT e.message_id FROM envelopes e WHERE e.expires <= $1"
                    " AND e.received_from IS NULL AND e.completed_at IS NULL AND EXISTS"
                    " (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id"
                    "  AND t.outcome = 'open' AND t.reason <> $2)",
                    at,
                    RECHECK_REASON,
                )
            }
            closed = []
            for message_id in sorted(origin | set(failed)):
                hops = None if message_id in origin else failed[message_id]
                closed.append(
                    await close_open(conn, message_id, hops=hops, reason=EXPIRED_REASON, at=at)
                )
            # Tombstones of deleted messages are kept until their expiry (and a grace).
            await conn.execute("DELETE FROM tombstones WHERE expires <= $1", at - TOMBSTONE_GRACE)
            return closed

        return await self._write(tx)

    # -- receipts ---------------------------------------------------------------
    async def delivered(
        self,
        message_id: str,
        *,
        receipt: bytes,
        now: datetime,
        site: str | None = None,
        receipt_digest: bytes | None = None,
        receipt_for: bytes | None = None,
    ) -> bool:
        at = aware(now)

        async def tx(conn: Conn) -> bool:
            if not await conn.fetchval(
                "SELECT true FROM envelopes WHERE message_id = $1", message_id
            ):
                raise StoreError(f"unknown message {message_id}")
            sites = [
                r["site"]
                for r in await conn.fetch(
                    "SELECT site FROM destinations WHERE message_id = $1 ORDER BY site",
                    message_id,
                )
            ]
            which = site
            if which is None and len(sites) > 1:
                raise StoreError(
                    f"{message_id} has {len(sites)} destinations: name the one that receipted it"
                )
            if which is None and sites:
                which = sites[0]
            item = ReceiptRecord(
                message_id, which or "", receipt_digest or b"", receipt_for, receipt
            )
            (done,) = await record_receipt_rows(conn, [item], at, legacy=which is None)
            if done.status == "unknown":
                raise StoreError(f"{which} is not a destination of {message_id} here")
            return done.status == "recorded"

        return await self._write(tx)

    async def receipt(self, message_id: str) -> bytes | None:
        async def q(conn: Conn) -> bytes | None:
            row = await conn.fetchrow(
                "SELECT e.receipt,"
                " (SELECT count(*) FROM destinations t WHERE t.message_id = e.message_id) AS n,"
                " (SELECT t.receipt FROM destinations t WHERE t.message_id = e.message_id"
                "  LIMIT 1) AS only"
                " FROM envelopes e WHERE e.message_id = $1",
                message_id,
            )
            if row is None:
                return None
            if row["receipt"] is not None:
                return bytes(row["receipt"])
            if row["n"] == 1 and row["only"] is not None:
                return bytes(row["only"])
            return None

        return await self._read(q)

    async def durability(self) -> dict[str, str]:
        async def q(conn: Conn) -> dict[str, str]:
            r = await conn.fetchrow(
                "SELECT current_setting('synchronous_commit') AS synchronous_commit,"
                " current_setting('fsync') AS fsync,"
                " current_setting('full_page_writes') AS full_page_writes,"
                " current_setting('server_version') AS server_version,"
                " coalesce(current_schema(), '') AS schema"
            )
            return {"backend": "postgresql", **{k: str(v) for k, v in r.items()}}

        return await self._read(q)

    # -- change notices -----------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """LISTEN on the store's channel, on a connection of its own: accept() notifies
        it in the accepting transaction, so a notice means committed work."""
        self._live()
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self._settings
            )
            await conn.add_listener(self.channel, lambda *_: on_change())
        except _ERRORS as exc:
            log.warning(f"no change notices from PostgreSQL ({exc}): polling only")

            async def nothing() -> None:
                return None

            return nothing

        async def stop() -> None:
            with contextlib.suppress(*_ERRORS):
                await conn.close(timeout=5)

        return stop


if TYPE_CHECKING:

    def _conforms(store: PostgresStore) -> Store:
        return store
