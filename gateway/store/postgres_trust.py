"""The trust part of the PostgreSQL store: time-stamp tokens and directory fetches.

Envelopes awaiting a time-stamp carry ``stamp_pending`` (the column default, so the
accepting transaction sets it) under a partial index; settling clears it in the same
transaction that stores the tokens (sql/postgres/v4_timestamps.sql). Two workers of one
site may both stamp an envelope: the second token is dropped (ON CONFLICT DO NOTHING).

A mixin of :class:`gateway.store.postgres.PostgresStore` (``_read`` / ``_write``: one
transaction each, retried on a deadlock).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from envelope.limits import MAX_HEAD_XML_BYTES
from gateway.store._common import aware, check_limit
from gateway.store.base import DirectoryFetch, PendingStamp, TimestampRecord
from gateway.store.postgres_destinations import requeue as requeue_deliveries

T = TypeVar("T")
Conn = Any  # asyncpg.Connection


class PostgresTrust:
    """The timestamp and directory-fetch methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        await self.timestamp_settle(records, done=())

    async def timestamp_settle(
        self, records: Sequence[TimestampRecord], *, done: Sequence[str]
    ) -> None:
        rows = [
            (r.message_id, r.kind, r.digest, r.token, aware(r.at), r.digested or None)
            for r in records
        ]
        ids = list(done)

        async def tx(conn: Conn) -> None:
            if rows:
                await conn.executemany(
                    "INSERT INTO timestamps (message_id, kind, digest, token, at, digested)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    rows,
                )
            if ids:
                await conn.execute(
                    "UPDATE envelopes SET stamp_pending = false"
                    " WHERE message_id = ANY($1::text[]) AND stamp_pending",
                    ids,
                )

        if rows or ids:
            await self._write(tx)

    async def timestamp_pending(self, *, limit: int) -> list[PendingStamp]:
        check_limit(limit)

        async def q(conn: Conn) -> list[PendingStamp]:
            # The head's length is in the prefix (envelope/framing.py): read just it.
            rows = await conn.fetch(
                "SELECT message_id, origin, received_from, doc_class, digest,"
                " substring(data from 1 for (12 + least($2::bigint, CASE WHEN length(data) < 12"
                " THEN 0 ELSE (get_byte(data, 8)::bigint << 24) | (get_byte(data, 9) << 16)"
                " | (get_byte(data, 10) << 8) | get_byte(data, 11) END))::int)"
                " FROM envelopes WHERE stamp_pending ORDER BY accepted_at, message_id LIMIT $1",
                limit,
                MAX_HEAD_XML_BYTES,
            )
            return [PendingStamp(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

        return await self._read(q)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        async def q(conn: Conn) -> list[TimestampRecord]:
            rows = await conn.fetch(
                "SELECT message_id, kind, digest, token, at, digested FROM timestamps"
                " WHERE message_id = $1 ORDER BY at, kind",
                message_id,
            )
            return [
                TimestampRecord(
                    r[0],
                    r[1],
                    bytes(r[2]),
                    bytes(r[3]),
                    r[4].astimezone(UTC),
                    bytes(r[5] or b""),
                )
                for r in rows
            ]

        return await self._read(q)

    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        async def tx(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO directory_fetches (site, serial, at) VALUES ($1, $2, $3)"
                " ON CONFLICT (site) DO UPDATE SET"
                " serial = greatest(directory_fetches.serial, excluded.serial), at = excluded.at",
                site,
                serial,
                aware(now),
            )

        await self._write(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        async def q(conn: Conn) -> list[DirectoryFetch]:
            rows = await conn.fetch("SELECT site, serial, at FROM directory_fetches ORDER BY site")
            return [DirectoryFetch(r[0], int(r[1]), r[2].astimezone(UTC)) for r in rows]

        return await self._read(q)

    async def escrow(self, message_id: str) -> bytes | None:
        async def q(conn: Conn) -> bytes | None:
            value = await conn.fetchval(
                "SELECT escrow FROM envelopes WHERE message_id = $1", message_id
            )
            return None if value is None else bytes(value)

        return await self._read(q)

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        since = aware(receipts_since)

        async def q(conn: Conn) -> list[tuple[str, bytes]]:
            rows = await conn.fetch(
                "SELECT message_id, escrow FROM envelopes WHERE escrow IS NOT NULL"
                " AND (receipt IS NULL OR (doc_class = 'receipt' AND created >= $1))"
                " ORDER BY message_id",
                since,
            )
            return [(r["message_id"], bytes(r["escrow"])) for r in rows]

        return await self._read(q)

    async def replace_escrow(self, message_id: str, *, old: bytes, new: bytes) -> bool:
        async def tx(conn: Conn) -> bool:
            done = await conn.fetchval(
                "UPDATE envelopes SET escrow = $2 WHERE message_id = $1 AND escrow = $3"
                " RETURNING 1",
                message_id,
                new,
                old,
            )
            return done is not None

        return await self._write(tx)

    async def replace_sealed(
        self,
        message_id: str,
        *,
        data: bytes,
        digest: bytes,
        chain: bytes,
        hop_ack: bytes | None,
        expected_digest: bytes,
        requeue: Sequence[str],
        held_for: str | None,
        now: datetime,
        reason: str,
        resend_receipt: bool = False,
    ) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            if held_for is not None:
                held = await conn.fetchval(
                    "SELECT 1 FROM deliveries WHERE message_id = $1 AND state = 'held'"
                    " AND starts_with(last_reason, $2)",
                    message_id,
                    held_for,
                )
                if held is None:
                    return 0
            # Only while a destination still lacks its receipt (open or failed); without
            # destination rows: while the message has no receipt, or (resend_receipt) it
            # is a receipt sealed here whose stored proof, the hop ack, goes with its copy.
            replaceable = await conn.fetchval(
                "SELECT 1 FROM envelopes e WHERE e.message_id = $1"
                " AND e.digest = $3 AND e.digest != $4"
                " AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = $1"
                "      AND t.outcome <> 'delivered')"
                "  OR ((e.receipt IS NULL OR ($2 AND e.doc_class = 'receipt'))"
                "      AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = $1)))"
                " FOR UPDATE OF e",
                message_id,
                resend_receipt,
                expected_digest,
                digest,
            )
            if replaceable is None:
                return 0
            # Deliveries first: with none to send again (one being tried now, say), the
            # stored copy stays the one that try sends, and nothing changes. A requeued
            # failed delivery reopens its failed destinations.
            moved = await requeue_deliveries(
                conn, message_id, from_states=list(requeue), reason=reason, at=at
            )
            if moved:
                # Keep the replaced copy's head (superseded_heads, v12): a receipt naming
                # its digest is then shown to be for the same message. Its length is in
                # the prefix (envelope/framing.py).
                await conn.execute(
                    "INSERT INTO superseded_heads (message_id, digest, head, replaced_at)"
                    " SELECT message_id, digest, substring(data from 1 for (12 + least($3::bigint,"
                    " CASE WHEN length(data) < 12 THEN 0 ELSE (get_byte(data, 8)::bigint << 24)"
                    " | (get_byte(data, 9) << 16) | (get_byte(data, 10) << 8)"
                    " | get_byte(data, 11) END))::int), $2"
                    " FROM envelopes WHERE message_id = $1 ON CONFLICT DO NOTHING",
                    message_id,
                    at,
                    MAX_HEAD_XML_BYTES,
                )
                await conn.execute(
                    "UPDATE envelopes SET data = $2, digest = $3, chain = $4, hop_ack = $5,"
                    " size = $6, superseded = superseded || encode(digest, 'hex'),"
                    " receipt = CASE WHEN $7 AND doc_class = 'receipt' THEN NULL ELSE receipt END"
                    " WHERE message_id = $1",
                    message_id,
                    data,
                    digest,
                    chain,
                    hop_ack,
                    len(data),
                    resend_receipt,
                )
            return moved

        return await self._write(tx)

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        async def tx(conn: Conn) -> bool:
            done = await conn.fetchval(
                "WITH r AS (UPDATE envelopes SET hop_ack = $4 WHERE message_id = $1"
                " AND digest = $2 AND hop_ack = $3 RETURNING 1) SELECT count(*) FROM r",
                message_id,
                digest,
                old,
                new,
            )
            return bool(done)

        return await self._write(tx)
