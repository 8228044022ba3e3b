"""The destination's part of the SQLite store: inbound items and their settlement.

A mixin of :class:`gateway.store.sqlite.SqliteStore`: every call runs through the
store's ``_read`` / ``_write`` (one thread, one ``BEGIN IMMEDIATE … COMMIT``).
Local delivery reads a batch of ``received`` envelopes (:meth:`inbound_received`),
opens them outside the store, and settles the whole batch in one transaction
(:meth:`inbound_settle`): receipts queued, receipts recorded, items moved on.
"""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.store._common import DUPLICATE_RECEIPT, check_limit, check_record, split_digests
from gateway.store.base import (
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    MessageRoute,
    ReceiptRecord,
    SentMessage,
    Settled,
    StoreError,
)
from gateway.store.sqlite_common import (
    accept_one,
    add_history,
    dt,
    fail_undelivered,
    ts,
)
from gateway.store.sqlite_destinations import (
    close_open,
    has_rows,
    receipted,
    record_receipt_rows,
)

T = TypeVar("T")

_RECEIVED = """
WITH firsts AS (
    SELECT i.message_id, i.received_at, e.size
    FROM inbound i JOIN envelopes e ON e.message_id = i.message_id
    WHERE i.state = 'received'
    ORDER BY i.received_at, i.message_id LIMIT :limit
), sized AS (
    SELECT message_id, received_at, size,
           sum(size) OVER (ORDER BY received_at, message_id ROWS UNBOUNDED PRECEDING) AS upto
    FROM firsts
)
SELECT e.message_id, e.origin, e.destinations, e.digest, e.created, e.expires, e.priority,
       e.received_from, e.data, e.doc_class, e.chain
FROM sized s JOIN envelopes e ON e.message_id = s.message_id
WHERE s.upto <= :max_bytes OR s.upto = s.size
ORDER BY s.received_at, s.message_id
"""


def _settle_one(c: sqlite3.Connection, o: InboundOutcome, at: str) -> Settled:
    new = InState(o.state).value
    moved = c.execute(
        "UPDATE inbound SET state = ?, updated_at = ? WHERE message_id = ? AND state = 'received'",
        (new, at, o.message_id),
    ).rowcount
    if not moved:
        return Settled(applied=False, delivered=False)
    if o.receipt is not None:
        record, hops = o.receipt
        accept_one(c, record, hops, False, None, at)
    reason = o.reason
    outcome = None
    if o.delivered is not None:
        (outcome,) = record_receipt_rows(c, [o.delivered], at, legacy=True)
        if outcome.status == "duplicate":
            reason = DUPLICATE_RECEIPT.format(site=o.delivered.site)
    if o.own_receipt is not None:
        record_receipt_rows(c, [o.own_receipt], at)  # unknown (no row here): nothing to do
    closed = None
    if o.failed is not None:
        if o.failed_site is not None:
            closed = close_open(c, o.message_id, sites=[o.failed_site], reason=o.failed, at=at)
            closed = closed if closed.sites else None
        else:
            closed = fail_undelivered(c, o.message_id, None, o.failed, at)
    add_history(c, o.message_id, None, new, reason, at)
    return Settled(
        applied=True,
        delivered=outcome is not None and outcome.status == "recorded",
        receipt=outcome,
        closed=closed,
    )


class SqliteInbound:
    """The inbound methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None:
        at = ts(now)
        new = InState(state).value

        def tx(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT state FROM inbound WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no inbound item {message_id}")
            if row[0] == new:
                return
            c.execute(
                "UPDATE inbound SET state = ?, updated_at = ? WHERE message_id = ?",
                (new, at, message_id),
            )
            add_history(c, message_id, None, new, reason, at)

        await self._write(tx)

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        check_limit(limit)
        wanted = None if state is None else InState(state).value
        after_at = None if after is None else ts(after[0])
        after_id = None if after is None else after[1]

        def q(c: sqlite3.Connection) -> list[InboxItem]:
            rows = c.execute(
                "SELECT i.message_id, e.origin, i.state, i.received_at, e.size, e.doc_class"
                " FROM inbound i JOIN envelopes e ON e.message_id = i.message_id"
                " WHERE (:state IS NULL OR i.state = :state)"
                " AND (:after_at IS NULL OR i.received_at > :after_at"
                "  OR (i.received_at = :after_at AND i.message_id > :after_id))"
                " ORDER BY i.received_at, i.message_id LIMIT :limit",
                {"state": wanted, "limit": limit, "after_at": after_at, "after_id": after_id},
            ).fetchall()
            return [InboxItem(r[0], r[1], r[2], dt(r[3]), r[4], r[5]) for r in rows]

        return await self._read(q)

    async def inbound_received(self, *, limit: int, max_bytes: int) -> list[EnvelopeRecord]:
        if limit <= 0:
            return []

        def q(c: sqlite3.Connection) -> list[EnvelopeRecord]:
            rows = c.execute(_RECEIVED, {"limit": limit, "max_bytes": max_bytes}).fetchall()
            return [
                EnvelopeRecord(
                    message_id=r[0],
                    origin=r[1],
                    destinations=tuple(json.loads(r[2])),
                    digest=r[3],
                    created=dt(r[4]),
                    expires=dt(r[5]),
                    priority=r[6],
                    received_from=r[7],
                    data=r[8],
                    doc_class=r[9],
                    chain=r[10],
                )
                for r in rows
            ]

        return await self._read(q)

    async def inbound_settle(
        self, outcomes: Sequence[InboundOutcome], *, now: datetime
    ) -> list[Settled]:
        batch = list(outcomes)
        for o in batch:
            InState(o.state)
            if o.receipt is not None:
                check_record(o.receipt[0])
            for item in (o.delivered, o.own_receipt):
                if item is not None and not isinstance(item, ReceiptRecord):
                    raise StoreError(f"{o.message_id}: not a ReceiptRecord: {item!r}")
        if not batch:
            return []
        at = ts(now)
        return await self._write(lambda c: [_settle_one(c, o, at) for o in batch])

    async def sent_digests(self, message_ids: Sequence[str]) -> dict[str, SentMessage]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        def q(c: sqlite3.Connection) -> dict[str, SentMessage]:
            rows = c.execute(
                "SELECT message_id, destinations, digest, receipt, doc_class, superseded,"
                " received_from IS NULL"
                " FROM envelopes WHERE message_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
            out = {}
            for r in rows:
                destinations = tuple(json.loads(r[1]))
                done = receipted(c, r[0])
                if r[3] is not None and r[4] != "receipt" and not has_rows(c, r[0]):
                    # A message without destination rows, receipted (legacy: one receipt).
                    done = dict.fromkeys(destinations, b"")
                # The stored copy's digest, and those of the copies it replaced here
                # (re-sealed or re-signed after one may have been delivered: v10).
                digests = frozenset({bytes(r[2]), *split_digests(r[5])})
                out[r[0]] = SentMessage(destinations, digests, done, bytes(r[2]), bool(r[6]), r[4])
            return out

        return await self._read(q)

    async def superseded_digests(self, message_ids: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        def q(c: sqlite3.Connection) -> dict[str, tuple[bytes, ...]]:
            rows = c.execute(
                "SELECT message_id, superseded FROM envelopes WHERE superseded != ''"
                " AND message_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
            return {r[0]: split_digests(r[1]) for r in rows}

        return await self._read(q)

    async def superseded_heads(self, message_id: str) -> dict[bytes, bytes]:
        def q(c: sqlite3.Connection) -> dict[bytes, bytes]:
            rows = c.execute(
                "SELECT digest, head FROM superseded_heads WHERE message_id = ?", (message_id,)
            ).fetchall()
            return {bytes(r[0]): bytes(r[1]) for r in rows}

        return await self._read(q)

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        def q(c: sqlite3.Connection) -> dict[str, MessageRoute]:
            rows = c.execute(
                "SELECT message_id, origin, destinations, doc_class FROM envelopes"
                " WHERE message_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
            return {
                r[0]: MessageRoute(r[1], tuple(json.loads(r[2])), r[3], receipted(c, r[0]))
                for r in rows
            }

        return await self._read(q)
