"""What the PostgreSQL store's modules share: the transaction bodies that more than one
call runs (accepting, failing); the row primitives are in postgres_rows.py, receipts and
destination rows in postgres_destinations.py.

Each function takes a connection inside a transaction the caller opened, and works on
whole batches in a few set-based statements (``unnest`` of parallel arrays): one round
trip per kind of row, not one per envelope.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import UNDELIVERED, aware, rank, second_relayed_receipt, unique_hops
from gateway.store.base import Acceptance, Closed, EnvelopeRecord, ReceiptRecord, StoreError
from gateway.store.postgres_destinations import (
    close_open,
    insert_routes,
    lock_messages,
    record_receipt_rows,
    relayed_receipt,
)
from gateway.store.postgres_rows import (
    SET_STATE,
    Conn,
    add_history,
    opt_utc,
    set_state,
    utc,
)

__all__ = ["CLAIM", "SET_STATE", "AcceptItem", "Conn", "accept_rows"]
__all__ += ["add_history", "fail_undelivered", "opt_utc", "set_state", "utc"]

AcceptItem = tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]

_INSERT_ENVELOPES = """
INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,
                       priority, received_from, size, data, hop_ack, receipt, accepted_at,
                       doc_class, chain, escrow)
SELECT t.mid, t.origin, ARRAY(SELECT jsonb_array_elements_text(t.dest::jsonb)), t.digest,
       t.created, t.expires, t.priority, t.rfrom, t.size, t.data, t.ack, NULL, $12,
       t.doc_class, t.chain, t.escrow
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[],
            $6::timestamptz[], $7::text[], $8::text[], $9::bigint[], $10::bytea[], $11::bytea[],
            $13::text[], $14::bytea[], $15::bytea[])
     WITH ORDINALITY AS t(mid, origin, dest, digest, created, expires, priority, rfrom, size,
                          data, ack, doc_class, chain, escrow, n)
WHERE NOT EXISTS (SELECT 1 FROM tombstones x WHERE x.message_id = t.mid)
ORDER BY t.n
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""

_QUEUE_DELIVERIES = """
WITH q AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[])
    WITH ORDINALITY AS t(mid, peer, rank, created, n)
), queued AS (
    INSERT INTO deliveries (message_id, peer, state, attempts, updated_at, rank, created)
    SELECT mid, peer, 'queued', 0, $5, rank, created FROM q
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT mid, peer, 'queued', '', $5 FROM q ORDER BY n
"""

_ADD_INBOUND = """
WITH q AS (SELECT * FROM unnest($1::text[]) WITH ORDINALITY AS t(mid, n)),
added AS (
    INSERT INTO inbound (message_id, state, received_at, updated_at)
    SELECT mid, 'received', $2, $2 FROM q
)
INSERT INTO history (message_id, peer, state, reason, at)
SELECT mid, NULL, 'received', '', $2 FROM q ORDER BY n
"""

_FAIL = """
WITH moved AS (
    UPDATE deliveries SET state = 'failed', lease_owner = NULL, lease_until = NULL,
        last_reason = $3, updated_at = $4
    WHERE message_id = $1 AND state = ANY($5::text[]) AND ($2::text IS NULL OR peer = $2)
    RETURNING peer
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, peer, 'failed', $3, $4 FROM moved ORDER BY peer
)
SELECT count(*) FROM moved
"""


# Due work of one peer, in claim order: each branch reads the deliveries_claim index
# (peer, state, rank, created, message_id) in order and stops at the limit, skipping
# rows another claimer holds; the union keeps the first ``limit`` of them.
CLAIM = """
WITH q AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = $1 AND state = 'queued'
    ORDER BY rank, created, message_id LIMIT $3 FOR UPDATE SKIP LOCKED
), f AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = $1 AND state = 'deferred' AND next_attempt <= $2
    ORDER BY rank, created, message_id LIMIT $3 FOR UPDATE SKIP LOCKED
), s AS (
    SELECT message_id, peer, state AS old_state, lease_owner AS old_owner, rank, created
    FROM deliveries WHERE peer = $1 AND state = 'sending' AND lease_until < $2
    ORDER BY rank, created, message_id LIMIT $3 FOR UPDATE SKIP LOCKED
), due AS (
    SELECT * FROM q UNION ALL SELECT * FROM f UNION ALL SELECT * FROM s
    ORDER BY rank, created, message_id LIMIT $3
), claimed AS (
    UPDATE deliveries d
    SET state = 'sending', lease_owner = $4, lease_until = $5,
        attempts = d.attempts + 1, updated_at = $2
    FROM due
    WHERE d.message_id = due.message_id AND d.peer = due.peer
    RETURNING d.message_id, d.peer, d.attempts, d.rank, d.created, due.old_state, due.old_owner
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, peer, 'sending',
           CASE WHEN old_state = 'sending'
                THEN 'lease of ' || coalesce(old_owner, '?') || ' expired' ELSE '' END,
           $2
    FROM claimed ORDER BY rank, created, message_id
)
SELECT c.message_id, c.peer, c.attempts, e.data, e.expires, e.origin, e.digest, e.doc_class,
       e.chain
FROM claimed c JOIN envelopes e ON e.message_id = c.message_id
ORDER BY c.rank, c.created, c.message_id
"""


async def accept_rows(conn: Conn, items: Sequence[AcceptItem], at: datetime) -> list[Acceptance]:
    """accept() of every item, in order (a message id repeated within the batch is a
    duplicate of its first occurrence), in a few statements: the new messages'
    destination rows (``routes``) are inserted, and a new relayed receipt envelope
    (``answers``) records its receipt for its destination at this hub."""
    records = [item[0] for item in items]
    ranks = [rank(r.priority) for r in records]  # refuses an unknown priority first
    inserted = await conn.fetch(
        _INSERT_ENVELOPES,
        [r.message_id for r in records],
        [r.origin for r in records],
        [json.dumps(list(r.destinations)) for r in records],
        [r.digest for r in records],
        [aware(r.created) for r in records],
        [aware(r.expires) for r in records],
        [str(r.priority) for r in records],
        [r.received_from for r in records],
        [len(r.data) for r in records],
        [r.data for r in records],
        [item[3] for item in items],
        at,
        [r.doc_class for r in records],
        [r.chain for r in records],
        [r.escrow for r in records],
    )
    new = {row["message_id"] for row in inserted}
    first_ack: dict[str, bytes | None] = {}
    queued: list[tuple[str, str, int, datetime]] = []
    here: list[str] = []
    routed: list[EnvelopeRecord] = []
    relayed: list[tuple[int, ReceiptRecord]] = []
    refused: dict[str, Acceptance] = {}
    results: list[Acceptance | None] = []
    for index, (record, _, deliver_here, hop_ack) in enumerate(items):
        mid = record.message_id
        if mid in new and mid not in first_ack:
            first_ack[mid] = hop_ack
            results.append(Acceptance(new=True, hop_ack=hop_ack))
            answer = None if deliver_here else relayed_receipt(record)
            if answer is not None:
                relayed.append((index, answer))
        else:
            results.append(None)
    if relayed:
        # Recorded first, inside this transaction (record_receipt_rows locks the answered
        # message's row): a second, different receipt from the destination, whose hop
        # check read the store before a racing first one committed, is refused here,
        # neither stored nor queued (review 11b, F3).
        done = await record_receipt_rows(conn, [r for _, r in relayed], at, relayed=True)
        second = [
            (i, r) for (i, r), o in zip(relayed, done, strict=True) if o.status == "duplicate"
        ]
        if second:
            refused = await _refuse_second_receipts(conn, records, second)
            for i, _ in second:
                results[i] = refused[records[i].message_id]
    for (record, hops, deliver_here, _), order, result in zip(items, ranks, results, strict=True):
        if result is not None and result.new:
            mid = record.message_id
            queued += [(mid, p, order, aware(record.created)) for p in unique_hops(hops)]
            if record.routes:
                routed.append(record)
            if deliver_here:
                here.append(mid)
    earlier = [
        r.message_id
        for r, a in zip(records, results, strict=True)
        if a is None and r.message_id not in first_ack
    ]
    deleted: set[str] = set()
    if earlier:
        rows = await conn.fetch(
            "SELECT message_id, hop_ack FROM envelopes WHERE message_id = ANY($1::text[])",
            earlier,
        )
        first_ack.update({row["message_id"]: row["hop_ack"] for row in rows})
        # A message the operator deleted: its tombstone kept it out of the insert.
        rows = await conn.fetch(
            "SELECT message_id FROM tombstones WHERE message_id = ANY($1::text[])", earlier
        )
        deleted = {row["message_id"] for row in rows}
    if queued:
        await conn.execute(
            _QUEUE_DELIVERIES,
            [q[0] for q in queued],
            [q[1] for q in queued],
            [q[2] for q in queued],
            [q[3] for q in queued],
            at,
        )
    if here:
        await conn.execute(_ADD_INBOUND, here, at)
    await insert_routes(conn, routed, at)
    return [
        a
        if a is not None
        else refused[r.message_id]
        if r.message_id in refused
        else Acceptance(new=False, hop_ack=None, deleted=True)
        if r.message_id in deleted
        else Acceptance(new=False, hop_ack=first_ack.get(r.message_id))
        for r, a in zip(records, results, strict=True)
    ]


async def _refuse_second_receipts(
    conn: Conn,
    records: Sequence[EnvelopeRecord],
    second: Sequence[tuple[int, ReceiptRecord]],
) -> dict[str, Acceptance]:
    """Take back the receipt envelopes at ``second`` (index, its receipt), inserted by
    this transaction; their refusals by message id, naming the first receipt's digest."""
    await conn.execute(
        "DELETE FROM envelopes WHERE message_id = ANY($1::text[])",
        [records[i].message_id for i, _ in second],
    )
    rows = await conn.fetch(
        "SELECT message_id, site, receipt_digest FROM destinations"
        " WHERE (message_id, site) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [r.message_id for _, r in second],
        [r.site for _, r in second],
    )
    first = {(row["message_id"], row["site"]): row["receipt_digest"] for row in rows}
    return {
        records[i].message_id: Acceptance(
            new=False,
            hop_ack=None,
            refused=second_relayed_receipt(r.site, r.message_id, first.get((r.message_id, r.site))),
        )
        for i, r in second
    }


async def fail_undelivered(
    conn: Conn, message_id: str, peer: str | None, reason: str, at: datetime
) -> Closed | None:
    """Fail the message's undelivered deliveries (to ``peer``, or all) and close its open
    destinations through ``peer`` (or all of them). None if nothing changed. Raises
    StoreError for an unknown message."""
    if not await lock_messages(conn, [message_id]):  # the envelope row first, see there
        raise StoreError(f"unknown message {message_id}")
    moved = await conn.fetchval(_FAIL, message_id, peer, reason, at, list(UNDELIVERED))
    closed = await close_open(
        conn, message_id, hops=None if peer is None else [peer], reason=reason, at=at
    )
    if not moved and not closed.sites:
        return None
    return closed
