"""Delivery state and receipts per final destination, in the PostgreSQL store (issue 11).

One ``destinations`` row per final destination of a message, at the origin and at a hub
that relays it (sql/postgres/v11_destinations.sql). A row stores only its terminal fact
(``outcome``: open, delivered with its receipt, failed with its reason); the state it
shows is derived from its hop row when read (_common.DEST_STATE_SQL). Every change to a
destination row appends a history row whose peer is the destination site.

Closing rows and completing a message happen under the message's envelope row lock
(``FOR NO KEY UPDATE``, taken first, in message id order): two processes closing the
last two open rows of one message then run one after the other, so the second sees the
first's row closed and exactly one of them sets ``completed_at``. Every transaction that
takes it takes it before it changes a delivery or destination row of the message, so it
cannot deadlock against another one; accepting envelopes and the courier's hot path
(claim, forwarded, defer) do not take it, and wait on no envelope row.

The helpers take a connection inside a transaction the caller opened; the mixin's
methods run through the store's ``_read`` / ``_write``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
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
    ReceiptOutcome,
    ReceiptRecord,
)
from gateway.store.postgres_rows import Conn

T = TypeVar("T")

# Built from constants only (_common.py): no value is formatted into the SQL.
_DESTINATIONS = f"""
SELECT t.message_id, t.site, t.hop, {DEST_STATE_SQL} AS state, {DEST_REASON_SQL} AS reason,
       coalesce(d.attempts, 0) AS attempts,
       CASE WHEN t.outcome = 'open' THEN d.next_attempt END AS next_attempt,
       CASE WHEN t.outcome = 'open' AND t.hop IS NOT NULL AND d.updated_at > t.updated_at
            THEN d.updated_at ELSE t.updated_at END AS updated,
       t.receipt_at, t.receipt_digest, t.receipt_for,
       coalesce(length(t.receipt), 0) AS receipt_size
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
WHERE t.message_id = $1
ORDER BY t.site
"""  # noqa: S608

_DEPTHS = f"""
SELECT CASE WHEN t.outcome = 'open' THEN t.site ELSE '' END AS site,
       {DEST_STATE_SQL} AS state, count(*) AS n
FROM destinations t
LEFT JOIN deliveries d ON d.message_id = t.message_id AND d.peer = t.hop
GROUP BY 1, 2
"""  # noqa: S608

_INSERT_ROUTES = """
INSERT INTO destinations (message_id, site, hop, updated_at)
SELECT mid, site, hop, $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(mid, site, hop)
"""

# A message's receipt envelope sealed here (no destination rows): its next hop's signed
# acknowledgement is its proof of delivery, and its hop rows are delivered.
RECORD_ACKS = """
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS t(mid, receipt, n)
), stored AS (
    UPDATE envelopes e SET receipt = r.receipt
    FROM r WHERE e.message_id = r.mid AND e.receipt IS NULL
      AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = e.message_id)
    RETURNING e.message_id, r.n
), moved AS (
    UPDATE deliveries d
    SET state = 'delivered', next_attempt = NULL, lease_owner = NULL, lease_until = NULL,
        last_reason = $3, updated_at = $4
    FROM stored s WHERE d.message_id = s.message_id AND d.state <> 'delivered'
    RETURNING d.message_id, d.peer, s.n
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT message_id, peer, 'delivered', $3, $4 FROM (
        SELECT message_id, peer, n FROM moved
        UNION ALL
        SELECT s.message_id, NULL, s.n FROM stored s
        WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.message_id = s.message_id)
    ) x ORDER BY n, peer
)
SELECT n FROM stored
"""

_CLOSE = """
WITH closed AS (
    UPDATE destinations SET outcome = 'failed', reason = $2, updated_at = $3
    WHERE message_id = $1 AND outcome = 'open' AND reason <> $6
      AND ($4::text[] IS NULL OR hop = ANY($4::text[]))
      AND ($5::text[] IS NULL OR site = ANY($5::text[]))
    RETURNING site
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, site, 'failed', $2, $3 FROM closed ORDER BY site
)
SELECT site FROM closed ORDER BY site
"""

_REOPEN = """
WITH opened AS (
    UPDATE destinations SET outcome = 'open', reason = '', updated_at = $3
    WHERE message_id = $1 AND outcome = 'failed' AND hop = ANY($2::text[])
    RETURNING site
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, site, 'queued', $4, $3 FROM opened ORDER BY site
), reset AS (
    UPDATE envelopes SET completed_at = NULL
    WHERE message_id = $1 AND EXISTS (SELECT 1 FROM opened)
)
SELECT site FROM opened ORDER BY site
"""

_COMPLETE = """
UPDATE envelopes e SET completed_at = $2
WHERE e.message_id = $1 AND e.completed_at IS NULL
  AND EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = $1)
  AND NOT EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = $1 AND t.outcome = 'open')
RETURNING true
"""

# One receipt for one destination row, in one statement (a round trip per receipt):
# take it if the row has none yet; log it; mark the hop row delivered when no other
# destination through it lacks a receipt; complete the message when this closed its
# last open row. Every sub-statement reads the snapshot from before the statement, so
# the "other rows" tests leave out this row ($2), the only one it changes; the history
# rows go in in one INSERT, in order. $8: a relayed receipt (never takes a row
# delivered here, hop NULL); $9: the reason of a receipt after failure; $10: the
# history reason's digest suffix. Returns what the caller needs for its outcome.
_TAKE_RECEIPT = """
WITH cur AS (
    SELECT outcome, hop, receipt_at FROM destinations
    WHERE message_id = $1 AND site = $2 AND NOT ($8::boolean AND hop IS NULL)
), took AS (
    UPDATE destinations t
    SET outcome = 'delivered',
        reason = CASE WHEN c.outcome = 'failed' THEN $9 ELSE $3 END,
        receipt_digest = $4, receipt_for = $5, receipt_at = $6, receipt = $7, updated_at = $6
    FROM cur c
    WHERE t.message_id = $1 AND t.site = $2 AND c.receipt_at IS NULL
    RETURNING t.hop, c.outcome AS was, t.reason
), hop_moved AS (
    UPDATE deliveries d
    SET state = 'delivered', next_attempt = NULL, lease_owner = NULL, lease_until = NULL,
        last_reason = $11, updated_at = $6
    FROM took
    WHERE d.message_id = $1 AND d.peer = took.hop AND d.state <> 'delivered'
      AND NOT EXISTS (SELECT 1 FROM destinations x
                      WHERE x.message_id = $1 AND x.hop = took.hop AND x.site <> $2
                        AND x.outcome <> 'delivered')
    RETURNING d.peer
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, peer, 'delivered', reason, $6 FROM (
        SELECT 1 AS k, $2::text AS peer, took.reason || $10 AS reason FROM took
        UNION ALL
        SELECT 2, peer, $11 FROM hop_moved
    ) x ORDER BY k
), completed AS (
    UPDATE envelopes e SET completed_at = $6
    FROM took
    WHERE e.message_id = $1 AND took.was = 'open' AND e.completed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM destinations x
                      WHERE x.message_id = $1 AND x.site <> $2 AND x.outcome = 'open')
    RETURNING true
)
SELECT EXISTS (SELECT 1 FROM cur) AS found,
       EXISTS (SELECT 1 FROM took) AS took,
       EXISTS (SELECT 1 FROM completed) AS completed,
       (SELECT count(*) FROM destinations x WHERE x.message_id = $1) AS total,
       (SELECT count(*) FROM destinations x WHERE x.message_id = $1 AND x.outcome = 'delivered')
       + (SELECT count(*) FROM took WHERE took.was <> 'delivered') AS delivered
"""


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


async def lock_messages(conn: Conn, message_ids: Iterable[str]) -> set[str]:
    """Lock the envelope rows of these messages (in id order); return those that exist."""
    ids = sorted(set(message_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT message_id FROM envelopes WHERE message_id = ANY($1::text[])"
        " ORDER BY message_id FOR NO KEY UPDATE",
        ids,
    )
    return {r["message_id"] for r in rows}


def route_rows(records: Sequence[EnvelopeRecord]) -> list[tuple[str, str, str | None]]:
    """(message id, destination, hop) of each record's routes, the first route of a site
    winning."""
    out: list[tuple[str, str, str | None]] = []
    for record in records:
        routes: dict[str, str | None] = {}
        for site, hop in record.routes:
            routes.setdefault(site, hop)
        out += [(record.message_id, site, hop) for site, hop in routes.items()]
    return out


async def insert_routes(conn: Conn, records: Sequence[EnvelopeRecord], at: datetime) -> None:
    """One open row per destination of each (new) record's routes."""
    rows = route_rows(records)
    if rows:
        await conn.execute(
            _INSERT_ROUTES, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], at
        )


def relayed_receipt(record: EnvelopeRecord) -> ReceiptRecord | None:
    """What a hub records for a receipt envelope it takes to relay (None: not one)."""
    if record.received_from is None or record.doc_class != "receipt" or not record.answers:
        return None
    return ReceiptRecord(
        record.answers, record.origin, record.digest, None, None, RELAYED_RECEIPT_REASON
    )


async def record_acks(conn: Conn, items: Sequence[tuple[str, bytes]], at: datetime) -> set[int]:
    """Store the hop acknowledgements of receipt envelopes sealed here (messages without
    destination rows) and mark their deliveries delivered; return the indexes of the
    items newly recorded (an unknown message, one with destination rows or one recorded
    already is not)."""
    if not items:
        return set()
    rows = await conn.fetch(
        RECORD_ACKS, [m for m, _ in items], [r for _, r in items], RECEIPT_REASON, at
    )
    return {int(row["n"]) - 1 for row in rows}


async def maybe_complete(conn: Conn, message_id: str, at: datetime) -> bool:
    """Set ``completed_at`` if the message has rows, none open, and it is not set yet;
    True only for the call that set it (the caller holds the envelope's lock)."""
    return bool(await conn.fetchval(_COMPLETE, message_id, at))


async def _legacy_receipt(conn: Conn, item: ReceiptRecord, at: datetime) -> ReceiptOutcome:
    """A message without destination rows (accepted without routes): the receipt is the
    message's, as before v11 (envelopes.receipt, every hop row delivered)."""
    if item.data is None:
        return ReceiptOutcome("unknown", 0, 0, False)
    if await record_acks(conn, [(item.message_id, item.data)], at):
        await conn.execute(
            "UPDATE envelopes SET completed_at = $2 WHERE message_id = $1 AND completed_at IS NULL",
            item.message_id,
            at,
        )
        return ReceiptOutcome("recorded", 1, 1, True)
    return ReceiptOutcome("duplicate", 1, 1, False)


async def record_receipt_rows(
    conn: Conn,
    items: Sequence[ReceiptRecord],
    at: datetime,
    *,
    legacy: bool = False,
    relayed: bool = False,
) -> list[ReceiptOutcome]:
    """Record each receipt for its destination row, once (the first one stands, also
    within the batch: the items are taken in order).

    ``legacy``: a message that exists without any destination row takes the receipt as
    before v11 (see _legacy_receipt); otherwise it is ``unknown``. ``relayed``: a receipt
    passing through here on its way to the origin, which closes only a row forwarded
    on (a row delivered here, hop None, is this site's own to close: ``unknown``).
    """
    known = await lock_messages(conn, (i.message_id for i in items))
    out: list[ReceiptOutcome] = []
    for item in items:
        if item.message_id not in known:
            out.append(ReceiptOutcome("unknown", 0, 0, False))
            continue
        reason = item.reason
        digest = _bytes(item.receipt_digest) or None
        row = await conn.fetchrow(
            _TAKE_RECEIPT,
            item.message_id,
            item.site,
            reason,
            digest,
            _bytes(item.receipt_for),
            at,
            _bytes(item.data),
            relayed,
            LATE_RECEIPT_REASON,
            f" sha256:{digest.hex()[:16]}" if digest else "",
            RECEIPT_REASON,
        )
        delivered, total = int(row["delivered"]), int(row["total"])
        if not row["found"]:
            if legacy and total == 0:
                out.append(await _legacy_receipt(conn, item, at))
            else:
                out.append(ReceiptOutcome("unknown", delivered, total, False))
        elif not row["took"]:
            out.append(ReceiptOutcome("duplicate", delivered, total, False))
        else:
            out.append(ReceiptOutcome("recorded", delivered, total, bool(row["completed"])))
    return out


async def close_open(
    conn: Conn,
    message_id: str,
    *,
    hops: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    reason: str,
    at: datetime,
) -> Closed:
    """Fail the message's open rows (only those through ``hops``, and only those of
    ``sites``, when given) but a row waiting for its kept receipt's re-check
    (RECHECK_REASON); history per row; complete the message if none is left open."""
    await lock_messages(conn, [message_id])
    rows = await conn.fetch(
        _CLOSE,
        message_id,
        reason,
        at,
        None if hops is None else list(hops),
        None if sites is None else list(sites),
        RECHECK_REASON,
    )
    closed = tuple(r["site"] for r in rows)
    completed = bool(closed) and await maybe_complete(conn, message_id, at)
    return Closed(message_id, closed, reason, completed)


async def receipted(conn: Conn, message_ids: Sequence[str]) -> dict[str, dict[str, bytes]]:
    """message id -> (site -> receipt digest) of the rows with a receipt (b"": digest
    not known, recorded before v11)."""
    rows = await conn.fetch(
        "SELECT message_id, site, receipt_digest FROM destinations"
        " WHERE message_id = ANY($1::text[]) AND receipt_at IS NOT NULL ORDER BY site",
        list(message_ids),
    )
    out: dict[str, dict[str, bytes]] = {}
    for r in rows:
        out.setdefault(r["message_id"], {})[r["site"]] = bytes(r["receipt_digest"] or b"")
    return out
