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

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from gateway.store._common import (
    EXPIRED_REASON,
    HOLDABLE,
    LATEST_VERSION,
    MIGRATIONS,
    RECEIPT_REASON,
    RETRYABLE,
    UNDELIVERED,
    aware,
    check_record,
    load_sql,
    unique_hops,
)
from gateway.store.base import (
    Acceptance,
    Claimed,
    EnvelopeRecord,
    InboxItem,
    InState,
    OutState,
    QueueEntry,
    StoreError,
    Transition,
)
from gateway.store.postgres_integrators import PostgresIntegrators

if TYPE_CHECKING:
    from gateway.store.base import Store

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (asyncpg ships no type information)

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT = 10.0
_TX_ATTEMPTS = 3
_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
_NOT_DELIVERED = [s.value for s in OutState if s != OutState.DELIVERED]

_CLAIM = """
WITH due AS (
    SELECT d.message_id, d.peer, d.state AS old_state, d.lease_owner AS old_owner
    FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id
    WHERE d.peer = $1
      AND (d.state = 'queued'
           OR (d.state = 'deferred' AND d.next_attempt <= $2)
           OR (d.state = 'sending' AND d.lease_until < $2))
    ORDER BY CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1
                             WHEN 'priority' THEN 2 ELSE 3 END,
             e.created, d.message_id
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
    SET state = 'sending', lease_owner = $4, lease_until = $5,
        attempts = d.attempts + 1, updated_at = $2
    FROM due
    WHERE d.message_id = due.message_id AND d.peer = due.peer
    RETURNING d.message_id, d.peer, d.attempts, due.old_state, due.old_owner
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, peer, 'sending',
           CASE WHEN old_state = 'sending'
                THEN 'lease of ' || coalesce(old_owner, '?') || ' expired' ELSE '' END,
           $2
    FROM claimed ORDER BY message_id
)
SELECT c.message_id, c.peer, c.attempts, e.data, e.expires
FROM claimed c JOIN envelopes e ON e.message_id = c.message_id
ORDER BY CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1
                         WHEN 'priority' THEN 2 ELSE 3 END,
         e.created, c.message_id
"""

_SET_STATE = """
WITH moved AS (
    UPDATE deliveries
    SET state = $2, next_attempt = $3, lease_owner = NULL, lease_until = NULL,
        last_reason = $4, updated_at = $5
    WHERE message_id = $1 AND state = ANY($6::text[])
    RETURNING peer
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, peer, $2, $4, $5 FROM moved ORDER BY peer
)
SELECT count(*) FROM moved
"""

_QUEUE = """
SELECT d.message_id, d.peer, d.state, d.attempts, d.next_attempt, d.last_reason,
       e.origin, e.destinations, e.created, e.expires, e.priority, e.size
FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id
WHERE ($1::text IS NULL OR d.peer = $1) AND ($2::text IS NULL OR d.state = $2)
ORDER BY CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1
                         WHEN 'priority' THEN 2 ELSE 3 END,
         e.created, d.message_id, d.peer
"""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _opt_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


async def _history(
    conn: Conn, message_id: str, peer: str | None, state: str, reason: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO history (message_id, peer, state, reason, at) VALUES ($1, $2, $3, $4, $5)",
        message_id,
        peer,
        state,
        reason,
        at,
    )


async def _accept_one(
    conn: Conn,
    record: EnvelopeRecord,
    next_hops: Sequence[str],
    deliver_here: bool,
    hop_ack: bytes | None,
    at: datetime,
) -> Acceptance:
    inserted = await conn.fetchval(
        "INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,"
        " priority, received_from, size, data, hop_ack, receipt, accepted_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12)"
        " ON CONFLICT (message_id) DO NOTHING RETURNING true",
        record.message_id,
        record.origin,
        list(record.destinations),
        record.digest,
        aware(record.created),
        aware(record.expires),
        str(record.priority),
        record.received_from,
        len(record.data),
        record.data,
        hop_ack,
        at,
    )
    if not inserted:
        first = await conn.fetchval(
            "SELECT hop_ack FROM envelopes WHERE message_id = $1", record.message_id
        )
        return Acceptance(new=False, hop_ack=first)
    hops = unique_hops(next_hops)
    if hops:
        await conn.execute(
            "WITH hops AS (SELECT p, n FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n)),"
            " queued AS (INSERT INTO deliveries (message_id, peer, state, attempts, updated_at)"
            "  SELECT $1, p, 'queued', 0, $3 FROM hops)"
            " INSERT INTO history (message_id, peer, state, reason, at)"
            " SELECT $1, p, 'queued', '', $3 FROM hops ORDER BY n",
            record.message_id,
            hops,
            at,
        )
    if deliver_here:
        await conn.execute(
            "INSERT INTO inbound (message_id, state, received_at, updated_at)"
            " VALUES ($1, 'received', $2, $2)",
            record.message_id,
            at,
        )
        await _history(conn, record.message_id, None, InState.RECEIVED.value, "", at)
    return Acceptance(new=True, hop_ack=hop_ack)


async def _set_state(
    conn: Conn,
    message_id: str,
    *,
    to: str,
    from_states: Sequence[str],
    reason: str,
    at: datetime,
    next_attempt: datetime | None = None,
) -> int:
    """Move the message's deliveries in ``from_states`` to ``to`` (lease dropped); history."""
    moved = await conn.fetchval(
        _SET_STATE,
        message_id,
        to,
        next_attempt,
        reason,
        at,
        [str(s) for s in from_states],
    )
    return int(moved)


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


class PostgresStore(PostgresIntegrators):
    """:class:`~gateway.store.base.Store` on a PostgreSQL database (one schema)."""

    def __init__(self, pool: Any, schema: str | None):
        self._pool: Any = pool
        self.schema = schema

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
        store = cls(pool, schema)
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
            await conn.execute(load_sql("postgres", name))
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, now())", version
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- plumbing ---------------------------------------------------------------
    def _live(self) -> Any:
        if self._pool is None:
            raise StoreError("the store is closed")
        return self._pool

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._live()
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except _ERRORS as exc:
            raise StoreError(f"PostgreSQL store: {exc}") from exc

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; rerun it if PostgreSQL aborted it as a deadlock
        or serialization victim (nothing of it was committed then)."""
        pool = self._live()
        for attempt in range(1, _TX_ATTEMPTS + 1):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
            except _RETRYABLE_ERRORS as exc:
                if attempt == _TX_ATTEMPTS:
                    raise StoreError(f"PostgreSQL store: {exc}") from exc
            except _ERRORS as exc:
                raise StoreError(f"PostgreSQL store: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- accepting --------------------------------------------------------------
    async def accept(
        self,
        record: EnvelopeRecord,
        *,
        next_hops: Sequence[str],
        deliver_here: bool,
        hop_ack: bytes | None,
        now: datetime,
    ) -> Acceptance:
        check_record(record)
        at = aware(now)
        hops = list(next_hops)

        async def tx(conn: Conn) -> Acceptance:
            return await _accept_one(conn, record, hops, deliver_here, hop_ack, at)

        return await self._write(tx)

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        batch = [(r, list(h), d, a) for r, h, d, a in items]
        for record, _, _, _ in batch:
            check_record(record)
        at = aware(now)
        if not batch:
            return []

        async def tx(conn: Conn) -> list[Acceptance]:
            return [await _accept_one(conn, r, h, d, a, at) for r, h, d, a in batch]

        return await self._write(tx)

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None:
        async def q(conn: Conn) -> EnvelopeRecord | None:
            r = await conn.fetchrow(
                "SELECT message_id, origin, destinations, digest, created, expires, priority,"
                " received_from, data FROM envelopes WHERE message_id = $1",
                message_id,
            )
            if r is None:
                return None
            return EnvelopeRecord(
                message_id=r["message_id"],
                origin=r["origin"],
                destinations=tuple(r["destinations"]),
                digest=r["digest"],
                created=_utc(r["created"]),
                expires=_utc(r["expires"]),
                priority=r["priority"],
                received_from=r["received_from"],
                data=r["data"],
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
            rows = await conn.fetch(_CLAIM, peer, at, limit, owner, until)
            return [
                Claimed(r["message_id"], r["peer"], r["attempts"], r["data"], _utc(r["expires"]))
                for r in rows
            ]

        return await self._write(tx)

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        at = aware(now)

        async def q(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT DISTINCT peer FROM deliveries WHERE state = 'queued'"
                " OR (state = 'deferred' AND next_attempt <= $1)"
                " OR (state = 'sending' AND lease_until < $1) ORDER BY peer",
                at,
            )
            return [r["peer"] for r in rows]

        return await self._read(q)

    async def next_due(self, *, now: datetime) -> datetime | None:
        aware(now)

        async def q(conn: Conn) -> datetime | None:
            first = await conn.fetchval(
                "SELECT min(next_attempt) FROM deliveries WHERE state = 'deferred'"
            )
            return _opt_utc(first)

        return await self._read(q)

    async def forwarded(
        self, items: Sequence[tuple[str, str]], *, owner: str, now: datetime, reason: str = ""
    ) -> None:
        at = aware(now)
        pairs = list(items)
        if not pairs:
            return

        async def tx(conn: Conn) -> None:
            await conn.execute(
                "WITH items AS ("
                "  SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(mid, peer, n)"
                "), moved AS ("
                "  UPDATE deliveries d SET state = 'forwarded', lease_owner = NULL,"
                "   lease_until = NULL, next_attempt = NULL, last_reason = $4, updated_at = $5"
                "  FROM items i WHERE d.message_id = i.mid AND d.peer = i.peer"
                "   AND d.state = 'sending' AND d.lease_owner = $3"
                "  RETURNING d.message_id, d.peer, i.n"
                ") INSERT INTO history (message_id, peer, state, reason, at)"
                " SELECT message_id, peer, 'forwarded', $4, $5 FROM moved ORDER BY n",
                [m for m, _ in pairs],
                [p for _, p in pairs],
                owner,
                reason,
                at,
            )

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

    async def fail(self, message_id: str, peer: str | None, *, reason: str, now: datetime) -> None:
        at = aware(now)

        async def tx(conn: Conn) -> None:
            if not await conn.fetchval(
                "SELECT true FROM envelopes WHERE message_id = $1", message_id
            ):
                raise StoreError(f"unknown message {message_id}")
            await conn.execute(
                "WITH moved AS ("
                "  UPDATE deliveries SET state = 'failed', lease_owner = NULL, lease_until = NULL,"
                "   last_reason = $3, updated_at = $4"
                "  WHERE message_id = $1 AND state = ANY($5::text[])"
                "   AND ($2::text IS NULL OR peer = $2)"
                "  RETURNING peer"
                ") INSERT INTO history (message_id, peer, state, reason, at)"
                " SELECT $1, peer, 'failed', $3, $4 FROM moved ORDER BY peer",
                message_id,
                peer,
                reason,
                at,
                list(UNDELIVERED),
            )

        await self._write(tx)

    async def expire(self, *, now: datetime) -> list[str]:
        at = aware(now)

        async def tx(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "WITH moved AS ("
                "  UPDATE deliveries d SET state = 'failed', lease_owner = NULL,"
                "   lease_until = NULL, last_reason = $2, updated_at = $1"
                "  FROM envelopes e"
                "  WHERE e.message_id = d.message_id AND e.expires <= $1"
                "   AND (d.state = ANY($3::text[])"
                # At the origin, a message forwarded but never receipted fails at expiry too.
                "    OR (d.state = 'forwarded' AND e.received_from IS NULL"
                "        AND e.receipt IS NULL))"
                "  RETURNING d.message_id, d.peer"
                "), logged AS ("
                "  INSERT INTO history (message_id, peer, state, reason, at)"
                "  SELECT message_id, peer, 'failed', $2, $1 FROM moved ORDER BY message_id, peer"
                ") SELECT DISTINCT message_id FROM moved ORDER BY message_id",
                at,
                EXPIRED_REASON,
                list(UNDELIVERED),
            )
            return [r["message_id"] for r in rows]

        return await self._write(tx)

    # -- receipts ---------------------------------------------------------------
    async def delivered(self, message_id: str, *, receipt: bytes, now: datetime) -> bool:
        at = aware(now)

        async def tx(conn: Conn) -> bool:
            stored = await conn.fetchval(
                "UPDATE envelopes SET receipt = $2 WHERE message_id = $1 AND receipt IS NULL"
                " RETURNING true",
                message_id,
                receipt,
            )
            if not stored:
                if await conn.fetchval(
                    "SELECT true FROM envelopes WHERE message_id = $1", message_id
                ):
                    return False
                raise StoreError(f"unknown message {message_id}")
            moved = await _set_state(
                conn,
                message_id,
                to=OutState.DELIVERED.value,
                from_states=_NOT_DELIVERED,
                reason=RECEIPT_REASON,
                at=at,
            )
            if not moved:
                await _history(conn, message_id, None, OutState.DELIVERED.value, RECEIPT_REASON, at)
            return True

        return await self._write(tx)

    async def receipt(self, message_id: str) -> bytes | None:
        async def q(conn: Conn) -> bytes | None:
            value: bytes | None = await conn.fetchval(
                "SELECT receipt FROM envelopes WHERE message_id = $1", message_id
            )
            return value

        return await self._read(q)

    # -- inbound ----------------------------------------------------------------
    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None:
        at = aware(now)
        new = InState(state).value

        async def tx(conn: Conn) -> None:
            old = await conn.fetchval(
                "SELECT state FROM inbound WHERE message_id = $1 FOR UPDATE", message_id
            )
            if old is None:
                raise StoreError(f"no inbound item {message_id}")
            if old == new:
                return
            await conn.execute(
                "UPDATE inbound SET state = $2, updated_at = $3 WHERE message_id = $1",
                message_id,
                new,
                at,
            )
            await _history(conn, message_id, None, new, reason, at)

        await self._write(tx)

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        wanted = None if state is None else InState(state).value
        after_at = None if after is None else aware(after[0])
        after_id = None if after is None else after[1]

        async def q(conn: Conn) -> list[InboxItem]:
            rows = await conn.fetch(
                "SELECT i.message_id, e.origin, i.state, i.received_at, e.size"
                " FROM inbound i JOIN envelopes e ON e.message_id = i.message_id"
                " WHERE ($1::text IS NULL OR i.state = $1)"
                " AND ($3::timestamptz IS NULL OR (i.received_at, i.message_id) > ($3, $4::text))"
                " ORDER BY i.received_at, i.message_id LIMIT $2",
                wanted,
                limit,
                after_at,
                after_id,
            )
            return [
                InboxItem(
                    r["message_id"], r["origin"], r["state"], _utc(r["received_at"]), r["size"]
                )
                for r in rows
            ]

        return await self._read(q)

    # -- operator ---------------------------------------------------------------
    async def _move(
        self,
        message_id: str,
        *,
        to: str,
        from_states: Sequence[str],
        reason: str,
        now: datetime,
        next_attempt: datetime | None = None,
    ) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            return await _set_state(
                conn,
                message_id,
                to=to,
                from_states=from_states,
                reason=reason,
                at=at,
                next_attempt=next_attempt,
            )

        return await self._write(tx)

    async def hold(self, message_id: str, *, now: datetime, reason: str) -> int:
        return await self._move(
            message_id, to=OutState.HELD.value, from_states=HOLDABLE, reason=reason, now=now
        )

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int:
        return await self._move(
            message_id,
            to=OutState.QUEUED.value,
            from_states=[OutState.HELD.value],
            reason=reason,
            now=now,
        )

    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        return await self._move(
            message_id,
            to=OutState.QUEUED.value,
            from_states=RETRYABLE,
            reason=reason,
            now=now,
            next_attempt=aware(now),
        )

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            removed = await conn.fetchval(
                "WITH gone AS (DELETE FROM deliveries WHERE message_id = $1 RETURNING 1)"
                " SELECT count(*) FROM gone",
                message_id,
            )
            inbound = await conn.fetchval(
                "DELETE FROM inbound WHERE message_id = $1 RETURNING true", message_id
            )
            envelope = await conn.fetchval(
                "DELETE FROM envelopes WHERE message_id = $1 RETURNING true", message_id
            )
            if removed or inbound or envelope:
                await _history(conn, message_id, None, "deleted", reason, at)
            return int(removed)

        return await self._write(tx)

    async def queue(self, *, peer: str | None = None, state: str | None = None) -> list[QueueEntry]:
        wanted = None if state is None else str(state)

        async def q(conn: Conn) -> list[QueueEntry]:
            rows = await conn.fetch(_QUEUE, peer, wanted)
            return [
                QueueEntry(
                    message_id=r["message_id"],
                    peer=r["peer"],
                    state=r["state"],
                    attempts=r["attempts"],
                    next_attempt=_opt_utc(r["next_attempt"]),
                    last_reason=r["last_reason"],
                    origin=r["origin"],
                    destinations=tuple(r["destinations"]),
                    created=_utc(r["created"]),
                    expires=_utc(r["expires"]),
                    priority=r["priority"],
                    size=r["size"],
                )
                for r in rows
            ]

        return await self._read(q)

    async def history(self, message_id: str) -> list[Transition]:
        async def q(conn: Conn) -> list[Transition]:
            rows = await conn.fetch(
                "SELECT at, peer, state, reason FROM history WHERE message_id = $1 ORDER BY id",
                message_id,
            )
            return [Transition(_utc(r["at"]), r["peer"], r["state"], r["reason"]) for r in rows]

        return await self._read(q)

    async def depths(self) -> dict[tuple[str, str], int]:
        async def q(conn: Conn) -> dict[tuple[str, str], int]:
            rows = await conn.fetch(
                "SELECT peer, state, count(*) AS n FROM deliveries GROUP BY peer, state"
            )
            return {(r["peer"], r["state"]): int(r["n"]) for r in rows}

        return await self._read(q)

    async def ping(self) -> None:
        async def q(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._read(q)

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


if TYPE_CHECKING:

    def _conforms(store: PostgresStore) -> Store:
        return store
