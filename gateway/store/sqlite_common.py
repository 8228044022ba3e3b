"""What the SQLite store's modules share: the transaction bodies that more than one
call runs (accepting, failing); the row primitives are in sqlite_rows.py, receipts and
destination rows in sqlite_destinations.py.

Each function takes the store's connection inside a transaction the caller opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from gateway.store._common import UNDELIVERED, rank, second_relayed_receipt, unique_hops
from gateway.store.base import Acceptance, Closed, EnvelopeRecord, InState, OutState, StoreError
from gateway.store.sqlite_destinations import (
    close_open,
    insert_routes,
    record_receipt_rows,
    relayed_receipt,
)
from gateway.store.sqlite_rows import add_history, dt, opt_dt, set_state, ts

__all__ = ["DUE", "accept_one", "add_history", "dt", "fail_undelivered", "opt_dt"]
__all__ += ["set_state", "ts"]

# Due work of one peer, in claim order: each branch reads the deliveries_claim index
# (peer, state, rank, created, message_id) in order and stops at the limit.
DUE = """
SELECT u.message_id, u.state, u.lease_owner, u.attempts, e.data, e.expires,
       e.origin, e.digest, e.doc_class, e.chain
FROM (
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'queued'
        ORDER BY rank, created, message_id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'deferred' AND next_attempt <= :now
        ORDER BY rank, created, message_id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT message_id, state, lease_owner, attempts, rank, created
        FROM deliveries WHERE peer = :peer AND state = 'sending' AND lease_until < :now
        ORDER BY rank, created, message_id LIMIT :limit)
) u JOIN envelopes e ON e.message_id = u.message_id
ORDER BY u.rank, u.created, u.message_id LIMIT :limit
"""


def accept_one(
    c: sqlite3.Connection,
    record: EnvelopeRecord,
    next_hops: Sequence[str],
    deliver_here: bool,
    hop_ack: bytes | None,
    at: str,
) -> Acceptance:
    created = ts(record.created)
    if c.execute("SELECT 1 FROM tombstones WHERE message_id = ?", (record.message_id,)).fetchone():
        return Acceptance(new=False, hop_ack=None, deleted=True)
    cur = c.execute(
        "INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,"
        " priority, received_from, size, data, hop_ack, receipt, accepted_at, doc_class, chain,"
        " escrow) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)"
        " ON CONFLICT (message_id) DO NOTHING",
        (
            record.message_id,
            record.origin,
            json.dumps(list(record.destinations)),
            record.digest,
            created,
            ts(record.expires),
            str(record.priority),
            record.received_from,
            len(record.data),
            record.data,
            hop_ack,
            at,
            record.doc_class,
            record.chain,
            record.escrow,
        ),
    )
    if cur.rowcount == 0:
        row = c.execute(
            "SELECT hop_ack FROM envelopes WHERE message_id = ?", (record.message_id,)
        ).fetchone()
        return Acceptance(new=False, hop_ack=row[0])
    relayed = None if deliver_here else relayed_receipt(record)
    if relayed is not None:
        # Recorded first, inside this transaction: a second, different receipt from the
        # destination (checked by the hop against a store read before it, and passing
        # when two race) is refused here, neither stored nor queued (review 11b, F3).
        (done,) = record_receipt_rows(c, [relayed], at, relayed=True)
        if done.status == "duplicate":
            c.execute("DELETE FROM envelopes WHERE message_id = ?", (record.message_id,))
            first = c.execute(
                "SELECT receipt_digest FROM destinations WHERE message_id = ? AND site = ?",
                (relayed.message_id, relayed.site),
            ).fetchone()
            why = second_relayed_receipt(relayed.site, relayed.message_id, first and first[0])
            return Acceptance(new=False, hop_ack=None, refused=why)
    order = rank(record.priority)
    hops = unique_hops(next_hops)
    if hops:
        c.executemany(
            "INSERT INTO deliveries (message_id, peer, state, attempts, updated_at, rank, created)"
            " VALUES (?, ?, 'queued', 0, ?, ?, ?)",
            [(record.message_id, peer, at, order, created) for peer in hops],
        )
        c.executemany(
            "INSERT INTO history (message_id, peer, state, reason, at)"
            " VALUES (?, ?, 'queued', '', ?)",
            [(record.message_id, peer, at) for peer in hops],
        )
    insert_routes(c, record, at)
    if deliver_here:
        c.execute(
            "INSERT INTO inbound (message_id, state, received_at, updated_at)"
            " VALUES (?, 'received', ?, ?)",
            (record.message_id, at, at),
        )
        add_history(c, record.message_id, None, InState.RECEIVED.value, "", at)
    return Acceptance(new=True, hop_ack=hop_ack)


def fail_undelivered(
    c: sqlite3.Connection, message_id: str, peer: str | None, reason: str, at: str
) -> Closed | None:
    """Fail the message's undelivered deliveries (to ``peer``, or all) and close its open
    destinations through ``peer`` (or all of them). None if nothing changed. Raises
    StoreError for an unknown message."""
    if not c.execute("SELECT 1 FROM envelopes WHERE message_id = ?", (message_id,)).fetchone():
        raise StoreError(f"unknown message {message_id}")
    rows = c.execute(
        "UPDATE deliveries SET state = 'failed', lease_owner = NULL,"
        " lease_until = NULL, last_reason = ?, updated_at = ?"
        " WHERE message_id = ? AND state IN (SELECT value FROM json_each(?))"
        " AND (? IS NULL OR peer = ?) RETURNING peer",
        (reason, at, message_id, json.dumps(list(UNDELIVERED)), peer, peer),
    ).fetchall()
    for (p,) in sorted(rows):
        add_history(c, message_id, p, OutState.FAILED.value, reason, at)
    closed = close_open(c, message_id, hops=None if peer is None else [peer], reason=reason, at=at)
    if not rows and not closed.sites:
        return None
    return closed
