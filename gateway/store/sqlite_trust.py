"""The trust part of the SQLite store: time-stamp tokens and directory fetches.

Envelopes awaiting a time-stamp carry ``stamp_pending = 1`` (the column default, so the
accepting transaction sets it) under a partial index; settling clears it in the same
transaction that stores the tokens (sql/sqlite/v4_timestamps.sql).

A mixin of :class:`gateway.store.sqlite.SqliteStore` (see sqlite_integrators.py for
the conventions: ``_read`` / ``_write`` on the store's thread, times as ISO text).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from envelope.framing import PREFIX_BYTES
from envelope.limits import MAX_HEAD_XML_BYTES
from gateway.store._common import aware, check_limit
from gateway.store.base import DirectoryFetch, PendingStamp, TimestampRecord
from gateway.store.sqlite_destinations import requeue as requeue_deliveries

T = TypeVar("T")


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class SqliteTrust:
    """The timestamp and directory-fetch methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        await self.timestamp_settle(records, done=())

    async def timestamp_settle(
        self, records: Sequence[TimestampRecord], *, done: Sequence[str]
    ) -> None:
        rows = [
            (r.message_id, r.kind, r.digest, r.token, _ts(r.at), r.digested or None)
            for r in records
        ]
        ids = [(message_id,) for message_id in done]

        def tx(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO timestamps (message_id, kind, digest, token, at, digested)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            c.executemany(
                "UPDATE envelopes SET stamp_pending = 0 WHERE message_id = ? AND stamp_pending = 1",
                ids,
            )

        if rows or ids:
            await self._write(tx)

    async def timestamp_pending(self, *, limit: int) -> list[PendingStamp]:
        check_limit(limit)

        def q(c: sqlite3.Connection) -> list[PendingStamp]:
            rows = c.execute(
                "SELECT message_id, origin, received_from, doc_class, digest,"
                " substr(data, 1, ?) FROM envelopes"
                " WHERE stamp_pending = 1 ORDER BY accepted_at, message_id LIMIT ?",
                (PREFIX_BYTES, limit),
            ).fetchall()
            out = []
            for r in rows:
                # The head's length is in the prefix (envelope/framing.py): read just it.
                prefix = bytes(r[5])
                length = int.from_bytes(prefix[-4:], "big") if len(prefix) == PREFIX_BYTES else 0
                head = c.execute(
                    "SELECT substr(data, 1, ?) FROM envelopes WHERE message_id = ?",
                    (PREFIX_BYTES + min(length, MAX_HEAD_XML_BYTES), r[0]),
                ).fetchone()
                out.append(PendingStamp(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(head[0])))
            return out

        return await self._read(q)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        def q(c: sqlite3.Connection) -> list[TimestampRecord]:
            rows = c.execute(
                "SELECT message_id, kind, digest, token, at, digested FROM timestamps"
                " WHERE message_id = ? ORDER BY at, kind",
                (message_id,),
            ).fetchall()
            return [
                TimestampRecord(r[0], r[1], bytes(r[2]), bytes(r[3]), _dt(r[4]), bytes(r[5] or b""))
                for r in rows
            ]

        return await self._read(q)

    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO directory_fetches (site, serial, at) VALUES (?, ?, ?)"
                " ON CONFLICT (site) DO UPDATE SET serial = max(serial, excluded.serial),"
                " at = excluded.at",
                (site, serial, at),
            )

        await self._write(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        def q(c: sqlite3.Connection) -> list[DirectoryFetch]:
            rows = c.execute("SELECT site, serial, at FROM directory_fetches ORDER BY site")
            return [DirectoryFetch(r[0], int(r[1]), _dt(r[2])) for r in rows.fetchall()]

        return await self._read(q)

    async def escrow(self, message_id: str) -> bytes | None:
        def q(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT escrow FROM envelopes WHERE message_id = ?", (message_id,)
            ).fetchone()
            return None if row is None or row[0] is None else bytes(row[0])

        return await self._read(q)

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        since = _ts(receipts_since)

        def q(c: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = c.execute(
                "SELECT message_id, escrow FROM envelopes WHERE escrow IS NOT NULL"
                " AND (receipt IS NULL OR (doc_class = 'receipt' AND created >= ?))"
                " ORDER BY message_id",
                (since,),
            ).fetchall()
            return [(r[0], bytes(r[1])) for r in rows]

        return await self._read(q)

    async def replace_escrow(self, message_id: str, *, old: bytes, new: bytes) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            return bool(
                c.execute(
                    "UPDATE envelopes SET escrow = ? WHERE message_id = ? AND escrow = ?",
                    (new, message_id, old),
                ).rowcount
            )

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
        at = _ts(now)
        requeue_states = list(requeue)
        again = 1 if resend_receipt else 0

        def tx(c: sqlite3.Connection) -> int:
            if held_for is not None:
                held = c.execute(
                    "SELECT 1 FROM deliveries WHERE message_id = ? AND state = 'held'"
                    " AND substr(last_reason, 1, length(?)) = ?",
                    (message_id, held_for, held_for),
                ).fetchone()
                if held is None:
                    return 0
            # Only while a destination still lacks its receipt (open or failed); without
            # destination rows: while the message has no receipt, or (resend_receipt) it
            # is a receipt sealed here whose stored proof, the hop ack, goes with its copy.
            replaceable = c.execute(
                "SELECT 1 FROM envelopes WHERE message_id = ? AND digest = ? AND digest != ?"
                " AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = ?"
                "      AND t.outcome <> 'delivered')"
                "  OR ((receipt IS NULL OR (? AND doc_class = 'receipt'))"
                "      AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = ?)))",
                (message_id, expected_digest, digest, message_id, again, message_id),
            ).fetchone()
            if replaceable is None:
                return 0
            # Deliveries first: with none to send again (one being tried now, say), the
            # stored copy stays the one that try sends, and nothing changes. A requeued
            # failed delivery reopens its failed destinations.
            moved = requeue_deliveries(
                c, message_id, from_states=requeue_states, reason=reason, at=at
            )
            if moved:
                _keep_head(c, message_id, at)
                c.execute(
                    "UPDATE envelopes SET data = ?, digest = ?, chain = ?, hop_ack = ?, size = ?,"
                    " superseded = superseded || hex(digest),"
                    " receipt = CASE WHEN ? AND doc_class = 'receipt' THEN NULL ELSE receipt END"
                    " WHERE message_id = ?",
                    (data, digest, chain, hop_ack, len(data), again, message_id),
                )
            return moved

        return await self._write(tx)

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE envelopes SET hop_ack = ? WHERE message_id = ? AND digest = ?"
                " AND hop_ack = ?",
                (new, message_id, digest, old),
            )
            return cur.rowcount > 0

        return await self._write(tx)


def _keep_head(c: sqlite3.Connection, message_id: str, at: str) -> None:
    """Keep the head of the stored copy that is being replaced (superseded_heads, v12):
    a receipt naming its digest is then shown to be for the same message."""
    (prefix,) = c.execute(
        "SELECT substr(data, 1, ?) FROM envelopes WHERE message_id = ?", (PREFIX_BYTES, message_id)
    ).fetchone()
    prefix = bytes(prefix)
    length = int.from_bytes(prefix[-4:], "big") if len(prefix) == PREFIX_BYTES else 0
    c.execute(
        "INSERT INTO superseded_heads (message_id, digest, head, replaced_at)"
        " SELECT message_id, digest, substr(data, 1, ?), ? FROM envelopes WHERE message_id = ?"
        " ON CONFLICT DO NOTHING",
        (PREFIX_BYTES + min(length, MAX_HEAD_XML_BYTES), at, message_id),
    )
