"""The Python step of the store's v11 migration: the origin's kept receipts, attributed.

Before v11 the origin verified every receipt envelope it received (signed by the site
the receipt names, a destination of the message, naming the digest of an envelope sent
as it), acknowledged it with the reason ``receipt`` and kept it (class ``receipt``,
``in-reply-to`` the message in its plain head). Only the first one's bytes went into
``envelopes.receipt``, which v11_destinations.sql attributes by those bytes; the other
destinations of a circular would stay open, and expiry would then fail a destination
whose verified receipt is in the same database (review 11b, F2). This step, run inside
the migration's transaction between the SQL file's two halves (its ``-- @step`` line),
closes each such ``(message, signer)`` row from its kept receipt envelope.

Rules:
- A kept receipt counts only if it was received here (``received_from`` set), is of
  class ``receipt``, its inbound item is acked and the last ``acked`` history row says
  ``receipt`` (what the origin wrote for a verified receipt, and only for one); its head
  parses, names the same origin as its row, and has the row's digest; it answers a
  message sent from here (``received_from`` NULL, not a receipt) that has an open
  destination row for its signer. Anything else is left as the SQL left it.
- Receipts are applied in the order they were acknowledged: the first one stands.
- The row takes the receipt's bytes, its digest and the time it was acknowledged;
  ``receipt_for`` (the digest the receipt names, sealed inside it: the store holds no
  key to open it) is the stored copy's digest when the message has no superseded copy
  (v10 checked the named digest against the stored one and the superseded ones), else
  NULL: not known here.
- Nothing is read twice: the open rows are read first, and if there are none the kept
  receipts are not read at all; receipts are read a page at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from envelope.errors import EnvelopeError
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS

STEP = "v11_kept_receipts"
PAGE_ROWS = 500
REASON = "receipt"

# The origin's open destination rows: (message_id, site).
_OPEN = """
SELECT t.message_id, t.site FROM destinations t JOIN envelopes e ON e.message_id = t.message_id
WHERE t.outcome = 'open' AND e.received_from IS NULL AND e.doc_class <> 'receipt'
"""

# The kept receipt envelopes acknowledged as verified, a page at a time (keyset on the
# id; {p} is the backend's parameter mark): id, origin, digest, data, acked at.
_KEPT = """
SELECT r.message_id, r.origin, r.digest, r.data, h.at
FROM envelopes r
JOIN inbound i ON i.message_id = r.message_id AND i.state = 'acked'
JOIN history h ON h.id = (SELECT max(x.id) FROM history x
                          WHERE x.message_id = r.message_id AND x.peer IS NULL
                            AND x.state = 'acked')
WHERE r.doc_class = 'receipt' AND r.received_from IS NOT NULL AND h.reason = 'receipt'
  AND r.message_id > {p1}
ORDER BY r.message_id LIMIT {p2}
"""

# Close one open row from a kept receipt ({p} as above): the answered message's digest
# is the named one only if it was never replaced here.
_CLOSE = """
UPDATE destinations SET outcome = 'delivered', reason = {p1}, receipt_digest = {p2},
    receipt_for = (SELECT CASE WHEN e.superseded IS NULL OR e.superseded = '' THEN e.digest END
                   FROM envelopes e WHERE e.message_id = {p3}),
    receipt_at = {p4}, updated_at = {p4},
    receipt = (SELECT r.data FROM envelopes r WHERE r.message_id = {p5})
WHERE message_id = {p3} AND site = {p6} AND outcome = 'open'
"""


@dataclass(frozen=True)
class Kept:
    """A kept receipt envelope attributed to its destination row."""

    answers: str  # the message it answers
    site: str  # its signer: the destination
    receipt_id: str  # its own message id (its bytes are read from there)
    digest: bytes  # its digest (SPEC 4.3)
    at: Any  # when it was acknowledged here (the backend's time value)


def attribute(row: Sequence[Any], open_rows: set[tuple[str, str]]) -> Kept | None:
    """The attribution of one kept receipt row (id, origin, digest, data, acked at), or
    None if it does not fit an open row (see the module rules)."""
    receipt_id, origin, digest, data, at = row
    try:
        parsed, _ = parse_framed_head(bytes(data))
    except EnvelopeError:
        return None
    r = parsed.head.routing
    answers = r.in_reply_to
    if (
        r.doc_class != RECEIPT_CLASS
        or answers is None
        or r.origin != origin
        or r.message_id != receipt_id
        or parsed.digest != bytes(digest)
        or (answers, origin) not in open_rows
    ):
        return None
    return Kept(answers, origin, receipt_id, bytes(digest), at)


def in_order(kept: Iterable[Kept]) -> list[Kept]:
    """Acknowledged first, first: the first receipt from a site stands."""
    return sorted(kept, key=lambda k: (k.at, k.receipt_id))


def _qmarks(sql: str) -> str:
    return sql.format(p1="?1", p2="?2", p3="?3", p4="?4", p5="?5", p6="?6")


def sqlite_step(c: sqlite3.Connection) -> None:
    """Run the step on a SQLite store, inside the caller's transaction."""
    open_rows = {(m, s) for m, s in c.execute(_OPEN).fetchall()}
    if not open_rows:
        return
    kept: list[Kept] = []
    after = ""
    sql = _qmarks(_KEPT)
    while True:
        rows = c.execute(sql, (after, PAGE_ROWS)).fetchall()
        kept += [k for row in rows if (k := attribute(row, open_rows)) is not None]
        if len(rows) < PAGE_ROWS:
            break
        after = rows[-1][0]
    close = _qmarks(_CLOSE)
    for k in in_order(kept):
        c.execute(close, (REASON, k.digest, k.answers, k.at, k.receipt_id, k.site))


def _dollars(sql: str) -> str:
    return sql.format(p1="$1", p2="$2", p3="$3", p4="$4", p5="$5", p6="$6")


async def postgres_step(conn: Any) -> None:
    """Run the step on a PostgreSQL store (an asyncpg connection), inside the caller's
    transaction."""
    open_rows = {(r["message_id"], r["site"]) for r in await conn.fetch(_OPEN)}
    if not open_rows:
        return
    kept: list[Kept] = []
    after = ""
    sql = _dollars(_KEPT)
    while True:
        rows = await conn.fetch(sql, after, PAGE_ROWS)
        kept += [k for row in rows if (k := attribute(tuple(row), open_rows)) is not None]
        if len(rows) < PAGE_ROWS:
            break
        after = rows[-1]["message_id"]
    close = _dollars(_CLOSE)
    for k in in_order(kept):
        at: datetime = k.at
        await conn.execute(close, REASON, k.digest, k.answers, at, k.receipt_id, k.site)
