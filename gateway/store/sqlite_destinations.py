"""Delivery state and receipts per final destination, in the SQLite store (issue 11).

One ``destinations`` row per final destination of a message, at the origin and at a hub
that relays it (sql/sqlite/v11_destinations.sql). A row stores only its terminal fact
(``outcome``: open, delivered with its receipt, failed with its reason); the state it
shows is derived from its hop row when read (_common.DEST_STATE_SQL).

The helpers take the store's connection inside a transaction the caller opened; the
mixin's methods run through the store's ``_read`` / ``_write``. Every change to a
destination row appends a history row whose peer is the destination site.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TypeVar

from gateway.store._common import (
    DEST_REASON_SQL,
    DEST_STATE_SQL,
    LATE_RECEIPT_REASON,
    RECEIPT_REASON,
    RECHECK_REASON,
    RELAYED_RECEIPT_REASON,
)
from gateway.store.base import (
    Closed,
    EnvelopeRecord,
    OutState,
    ReceiptOutcome,
    ReceiptRecord,
)
from gateway.store.sqlite_rows import add_history, set_state

T = TypeVar("T")

# Built from constants only (_common.py): no value is formatted into the SQL.
_DESTINATIONS = f"""
SELECT t.message_id, t.site, t.hop, {DEST_STATE_SQL}, {DEST_REASON_SQL},
       coalesce(d.attempts, 0),
       CASE WHEN t.outcome = 'open' THEN d.next_attempt END,
       CASE WHEN t.outcome = 'open' AND t.hop IS NOT NULL AND d.updated_at IS NOT NULL
            AND d.updated_at > t.updated_at THEN d.updated_at ELSE t.updated_at END,
       t.receipt_at, t.receipt_digest, t.receipt_for, coalesce(length(t.receipt), 0)
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
WHERE t.message_id = ?
ORDER BY t.site
"""  # noqa: S608

_DEPTHS = f"""
SELECT CASE WHEN t.outcome = 'open' THEN t.site ELSE '' END, {DEST_STATE_SQL}, count(*)
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
GROUP BY 1, 2
"""  # noqa: S608

_NOT_DELIVERED = [s.value for s in OutState if s != OutState.DELIVERED]


def _blob(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def has_rows(c: sqlite3.Connection, message_id: str) -> bool:
    return (
        c.execute(
            "SELECT 1 FROM destinations WHERE message_id = ? LIMIT 1", (message_id,)
        ).fetchone()
        is not None
    )


def insert_routes(c: sqlite3.Connection, record: EnvelopeRecord, at: str) -> None:
    """One open row per destination of ``record.routes`` (the first route of a site wins)."""
    routes: dict[str, str | None] = {}
    for site, hop in record.routes:
        routes.setdefault(site, hop)
    if routes:
        c.executemany(
            "INSERT INTO destinations (message_id, site, hop, updated_at) VALUES (?, ?, ?, ?)",
            [(record.message_id, site, hop, at) for site, hop in routes.items()],
        )


def relayed_receipt(record: EnvelopeRecord) -> ReceiptRecord | None:
    """What a hub records for a receipt envelope it takes to relay (None: not one)."""
    if record.received_from is None or record.doc_class != "receipt" or not record.answers:
        return None
    return ReceiptRecord(
        record.answers, record.origin, record.digest, None, None, RELAYED_RECEIPT_REASON
    )


def _counts(c: sqlite3.Connection, message_id: str) -> tuple[int, int]:
    delivered, total = c.execute(
        "SELECT coalesce(sum(outcome = 'delivered'), 0), count(*) FROM destinations"
        " WHERE message_id = ?",
        (message_id,),
    ).fetchone()
    return int(delivered), int(total)


def maybe_complete(c: sqlite3.Connection, message_id: str, at: str) -> bool:
    """Set ``completed_at`` if the message has rows, none open, and it is not set yet;
    True only for the call that set it."""
    cur = c.execute(
        "UPDATE envelopes SET completed_at = ? WHERE message_id = ? AND completed_at IS NULL"
        " AND EXISTS (SELECT 1 FROM destinations WHERE message_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM destinations WHERE message_id = ? AND outcome = 'open')",
        (at, message_id, message_id, message_id),
    )
    return cur.rowcount == 1


def _hop_done(c: sqlite3.Connection, message_id: str, hop: str, at: str) -> None:
    """Mark the hop row delivered once no destination through it lacks a receipt."""
    left = c.execute(
        "SELECT 1 FROM destinations WHERE message_id = ? AND hop = ? AND outcome <> 'delivered'"
        " LIMIT 1",
        (message_id, hop),
    ).fetchone()
    if left is None:
        set_state(
            c,
            message_id,
            to=OutState.DELIVERED.value,
            from_states=_NOT_DELIVERED,
            reason=RECEIPT_REASON,
            at=at,
            peers=[hop],
        )


def record_ack(c: sqlite3.Connection, message_id: str, proof: bytes, at: str) -> bool:
    """Store the proof of delivery of a message without destination rows (a receipt
    envelope sealed here: its next hop's signed acknowledgement) in envelopes.receipt and
    mark every hop row of it delivered; False if one was recorded already, or if the
    message has destination rows (their receipts are per destination), and for a message
    not stored here (deleted meanwhile: nothing to record)."""
    if has_rows(c, message_id):
        return False
    cur = c.execute(
        "UPDATE envelopes SET receipt = ? WHERE message_id = ? AND receipt IS NULL",
        (proof, message_id),
    )
    if cur.rowcount == 0:
        return False
    moved = set_state(
        c,
        message_id,
        to=OutState.DELIVERED.value,
        from_states=_NOT_DELIVERED,
        reason=RECEIPT_REASON,
        at=at,
    )
    if not moved:
        add_history(c, message_id, None, OutState.DELIVERED.value, RECEIPT_REASON, at)
    return True


def _legacy_receipt(c: sqlite3.Connection, item: ReceiptRecord, at: str) -> ReceiptOutcome:
    """A message without destination rows (accepted without routes): the receipt is the
    message's, as before v11 (envelopes.receipt, every hop row delivered)."""
    if item.data is None:
        return ReceiptOutcome("unknown", 0, 0, False)
    if record_ack(c, item.message_id, item.data, at):
        c.execute(
            "UPDATE envelopes SET completed_at = ? WHERE message_id = ? AND completed_at IS NULL",
            (at, item.message_id),
        )
        return ReceiptOutcome("recorded", 1, 1, True)
    return ReceiptOutcome("duplicate", 1, 1, False)


def record_receipt_rows(
    c: sqlite3.Connection,
    items: Sequence[ReceiptRecord],
    at: str,
    *,
    legacy: bool = False,
    relayed: bool = False,
) -> list[ReceiptOutcome]:
    """Record each receipt for its destination row, once (the first one stands).

    ``legacy``: a message that exists without any destination row takes the receipt as
    before v11 (see _legacy_receipt); otherwise it is ``unknown``. ``relayed``: a receipt
    passing through here on its way to the origin, which closes only a row forwarded
    on (a row delivered here, hop None, is this site's own to close: ``unknown``).
    """
    out: list[ReceiptOutcome] = []
    for item in items:
        row = c.execute(
            "SELECT outcome, hop, receipt_at FROM destinations WHERE message_id = ? AND site = ?",
            (item.message_id, item.site),
        ).fetchone()
        if row is not None and relayed and row[1] is None:
            row = None
        if row is None:
            if (
                legacy
                and not has_rows(c, item.message_id)
                and c.execute(
                    "SELECT 1 FROM envelopes WHERE message_id = ?", (item.message_id,)
                ).fetchone()
            ):
                out.append(_legacy_receipt(c, item, at))
                continue
            delivered, total = _counts(c, item.message_id)
            out.append(ReceiptOutcome("unknown", delivered, total, False))
            continue
        outcome, hop, receipt_at = row
        if receipt_at is not None:
            delivered, total = _counts(c, item.message_id)
            out.append(ReceiptOutcome("duplicate", delivered, total, False))
            continue
        reason = LATE_RECEIPT_REASON if outcome == "failed" else item.reason
        digest = _blob(item.receipt_digest) or None
        c.execute(
            "UPDATE destinations SET outcome = 'delivered', reason = ?, receipt_digest = ?,"
            " receipt_for = ?, receipt_at = ?, receipt = ?, updated_at = ?"
            " WHERE message_id = ? AND site = ? AND receipt_at IS NULL",
            (
                reason,
                digest,
                _blob(item.receipt_for),
                at,
                _blob(item.data),
                at,
                item.message_id,
                item.site,
            ),
        )
        told = f"{reason} sha256:{digest.hex()[:16]}" if digest else reason
        add_history(c, item.message_id, item.site, OutState.DELIVERED.value, told, at)
        if hop is not None:
            _hop_done(c, item.message_id, hop, at)
        completed = outcome == "open" and maybe_complete(c, item.message_id, at)
        delivered, total = _counts(c, item.message_id)
        out.append(ReceiptOutcome("recorded", delivered, total, completed))
    return out


def close_open(
    c: sqlite3.Connection,
    message_id: str,
    *,
    hops: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    reason: str,
    at: str,
) -> Closed:
    """Fail the message's open rows (only those through ``hops``, and only those of
    ``sites``, when given) but a row waiting for its kept receipt's re-check
    (RECHECK_REASON); history per row; complete the message if none is left open."""
    rows = c.execute(
        "UPDATE destinations SET outcome = 'failed', reason = ?, updated_at = ?"
        " WHERE message_id = ? AND outcome = 'open' AND reason <> ?"
        " AND (? IS NULL OR hop IN (SELECT value FROM json_each(?)))"
        " AND (? IS NULL OR site IN (SELECT value FROM json_each(?))) RETURNING site",
        (
            reason,
            at,
            message_id,
            RECHECK_REASON,
            None if hops is None else 1,
            json.dumps(list(hops or ())),
            None if sites is None else 1,
            json.dumps(list(sites or ())),
        ),
    ).fetchall()
    closed = sorted(r[0] for r in rows)
    for site in closed:
        add_history(c, message_id, site, OutState.FAILED.value, reason, at)
    completed = bool(closed) and maybe_complete(c, message_id, at)
    return Closed(message_id, tuple(closed), reason, completed)


def receipted(c: sqlite3.Connection, message_id: str) -> dict[str, bytes]:
    """site -> receipt digest of the rows with a receipt (b"": digest not known)."""
    rows = c.execute(
        "SELECT site, receipt_digest FROM destinations"
        " WHERE message_id = ? AND receipt_at IS NOT NULL",
        (message_id,),
    ).fetchall()
    return {r[0]: bytes(r[1] or b"") for r in rows}
