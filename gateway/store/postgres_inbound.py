"""The destination's part of the PostgreSQL store: inbound items and their settlement.

A mixin of :class:`gateway.store.postgres.PostgresStore`: every call runs through
the store's ``_read`` / ``_write`` (one transaction, retried on a deadlock).
Local delivery reads a batch of ``received`` envelopes (:meth:`inbound_received`),
opens them outside the store, and settles the whole batch in one transaction
(:meth:`inbound_settle`, a handful of set-based statements whatever the batch size).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.store._common import (
    DUPLICATE_RECEIPT,
    aware,
    check_limit,
    check_record,
    split_digests,
)
from gateway.store.base import (
    Closed,
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    MessageRoute,
    ReceiptOutcome,
    ReceiptRecord,
    SentMessage,
    Settled,
    StoreError,
)
from gateway.store.postgres_common import (
    AcceptItem,
    Conn,
    accept_rows,
    add_history,
    fail_undelivered,
    utc,
)
from gateway.store.postgres_destinations import close_open, receipted, record_receipt_rows

T = TypeVar("T")

_RECEIVED = """
WITH firsts AS (
    SELECT i.message_id, i.received_at, e.size
    FROM inbound i JOIN envelopes e ON e.message_id = i.message_id
    WHERE i.state = 'received'
    ORDER BY i.received_at, i.message_id LIMIT $1
), sized AS (
    SELECT message_id, received_at, size,
           sum(size) OVER (ORDER BY received_at, message_id ROWS UNBOUNDED PRECEDING) AS upto
    FROM firsts
)
SELECT e.message_id, e.origin, e.destinations, e.digest, e.created, e.expires, e.priority,
       e.received_from, e.data, e.doc_class, e.chain
FROM sized s JOIN envelopes e ON e.message_id = s.message_id
WHERE s.upto <= $2 OR s.upto = s.size
ORDER BY s.received_at, s.message_id
"""

# Move the items still 'received' to their new states, with their history; return which.
_SETTLE = """
WITH o AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
    WITH ORDINALITY AS t(mid, state, reason, n)
), moved AS (
    UPDATE inbound i SET state = o.state, updated_at = $4
    FROM o WHERE i.message_id = o.mid AND i.state = 'received'
    RETURNING i.message_id, o.state, o.reason, o.n
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, NULL, state, reason, $4 FROM moved ORDER BY n
)
SELECT n FROM moved
"""


class PostgresInbound:
    """The inbound methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

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
            await add_history(conn, message_id, None, new, reason, at)

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
        after_at = None if after is None else aware(after[0])
        after_id = None if after is None else after[1]

        async def q(conn: Conn) -> list[InboxItem]:
            rows = await conn.fetch(
                "SELECT i.message_id, e.origin, i.state, i.received_at, e.size, e.doc_class"
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
                    r["message_id"],
                    r["origin"],
                    r["state"],
                    utc(r["received_at"]),
                    r["size"],
                    r["doc_class"],
                )
                for r in rows
            ]

        return await self._read(q)

    async def inbound_received(self, *, limit: int, max_bytes: int) -> list[EnvelopeRecord]:
        if limit <= 0:
            return []

        async def q(conn: Conn) -> list[EnvelopeRecord]:
            rows = await conn.fetch(_RECEIVED, limit, max_bytes)
            return [
                EnvelopeRecord(
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
                for r in rows
            ]

        return await self._read(q)

    async def inbound_settle(
        self, outcomes: Sequence[InboundOutcome], *, now: datetime
    ) -> list[Settled]:
        batch = list(outcomes)
        states = [InState(o.state).value for o in batch]
        for o in batch:
            if o.receipt is not None:
                check_record(o.receipt[0])
            for item in (o.delivered, o.own_receipt):
                if item is not None and not isinstance(item, ReceiptRecord):
                    raise StoreError(f"{o.message_id}: not a ReceiptRecord: {item!r}")
        if not batch:
            return []
        at = aware(now)

        async def tx(conn: Conn) -> list[Settled]:
            # The items still 'received' (locked until the end, so still so when moved):
            # each one's first occurrence in the batch applies.
            rows = await conn.fetch(
                "SELECT message_id FROM inbound WHERE message_id = ANY($1::text[])"
                " AND state = 'received' ORDER BY message_id FOR UPDATE",
                list(dict.fromkeys(o.message_id for o in batch)),
            )
            waiting = {r["message_id"] for r in rows}
            applied: list[int] = []
            for i, o in enumerate(batch):
                if o.message_id in waiting:
                    waiting.discard(o.message_id)
                    applied.append(i)
            reasons = [o.reason for o in batch]
            receipts: list[AcceptItem] = []
            proofs: list[tuple[int, ReceiptRecord]] = []
            own: list[ReceiptRecord] = []
            for i in applied:
                o = batch[i]
                if o.receipt is not None:
                    receipts.append((o.receipt[0], o.receipt[1], False, None))
                if o.delivered is not None:
                    proofs.append((i, o.delivered))
                if o.own_receipt is not None:
                    own.append(o.own_receipt)
            if receipts:
                await accept_rows(conn, receipts, at)
            recorded: dict[int, ReceiptOutcome] = {}
            if proofs:
                done = await record_receipt_rows(conn, [p for _, p in proofs], at, legacy=True)
                for (i, proof), outcome in zip(proofs, done, strict=True):
                    recorded[i] = outcome
                    if outcome.status == "duplicate":
                        reasons[i] = DUPLICATE_RECEIPT.format(site=proof.site)
            if own:  # unknown (no row for this site here): nothing to do
                await record_receipt_rows(conn, own, at)
            closed: dict[int, Closed] = {}
            for i in applied:
                o = batch[i]
                if o.failed is None:
                    continue
                if o.failed_site is not None:
                    shut = await close_open(
                        conn, o.message_id, sites=[o.failed_site], reason=o.failed, at=at
                    )
                    if shut.sites:
                        closed[i] = shut
                else:
                    legacy = await fail_undelivered(conn, o.message_id, None, o.failed, at)
                    if legacy is not None:
                        closed[i] = legacy
            await conn.execute(
                _SETTLE,
                [batch[i].message_id for i in applied],
                [states[i] for i in applied],
                [reasons[i] for i in applied],
                at,
            )
            done_set = set(applied)
            return [
                Settled(
                    applied=i in done_set,
                    delivered=i in recorded and recorded[i].status == "recorded",
                    receipt=recorded.get(i),
                    closed=closed.get(i),
                )
                for i in range(len(batch))
            ]

        return await self._write(tx)

    async def sent_digests(self, message_ids: Sequence[str]) -> dict[str, SentMessage]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        async def q(conn: Conn) -> dict[str, SentMessage]:
            rows = await conn.fetch(
                "SELECT message_id, destinations, digest, receipt, doc_class, superseded,"
                " received_from IS NULL AS sent_here"
                " FROM envelopes WHERE message_id = ANY($1::text[])",
                ids,
            )
            done = await receipted(conn, ids)
            out = {}
            for r in rows:
                destinations = tuple(r["destinations"])
                sites = done.get(r["message_id"], {})
                if not sites and r["receipt"] is not None and r["doc_class"] != "receipt":
                    # A message without destination rows, receipted (legacy: one receipt).
                    sites = dict.fromkeys(destinations, b"")
                # The stored copy's digest, and those of the copies it replaced here
                # (re-sealed or re-signed after one may have been delivered: v10).
                stored = bytes(r["digest"])
                digests = frozenset({stored, *split_digests(r["superseded"])})
                out[r["message_id"]] = SentMessage(
                    destinations, digests, sites, stored, r["sent_here"], r["doc_class"]
                )
            return out

        return await self._read(q)

    async def superseded_digests(self, message_ids: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        async def q(conn: Conn) -> dict[str, tuple[bytes, ...]]:
            rows = await conn.fetch(
                "SELECT message_id, superseded FROM envelopes WHERE superseded != ''"
                " AND message_id = ANY($1::text[])",
                ids,
            )
            return {r["message_id"]: split_digests(r["superseded"]) for r in rows}

        return await self._read(q)

    async def superseded_heads(self, message_id: str) -> dict[bytes, bytes]:
        async def q(conn: Conn) -> dict[bytes, bytes]:
            rows = await conn.fetch(
                "SELECT digest, head FROM superseded_heads WHERE message_id = $1", message_id
            )
            return {bytes(r["digest"]): bytes(r["head"]) for r in rows}

        return await self._read(q)

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return {}

        async def q(conn: Conn) -> dict[str, MessageRoute]:
            rows = await conn.fetch(
                "SELECT message_id, origin, destinations, doc_class FROM envelopes"
                " WHERE message_id = ANY($1::text[])",
                ids,
            )
            done = await receipted(conn, ids)
            return {
                r["message_id"]: MessageRoute(
                    r["origin"],
                    tuple(r["destinations"]),
                    r["doc_class"],
                    done.get(r["message_id"], {}),
                )
                for r in rows
            }

        return await self._read(q)
