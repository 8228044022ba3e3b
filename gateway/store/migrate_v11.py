"""The Python step of the store's v11 migration: the rows the origin's kept receipts answer.

Before v11 the origin verified every receipt envelope it received against the signed
receipt *document* inside it (the message it names, its site = the signer, a
destination of that message, naming the digest of an envelope sent as it),
acknowledged it with the reason ``receipt`` and kept it (class ``receipt``). It never
compared the document with the envelope's plain routing header ``in-reply-to`` (that
check came with v11: gateway/relay/circular.py check_origin_receipt ``answers``). Only the
first one's bytes went into ``envelopes.receipt``, which v11_destinations.sql
attributes by those bytes (v10 recorded them for that message).

The other destinations of a circular would stay open, and expiry would then fail a
destination whose verified receipt is in the same database (review 11b, F2). Closing
them from the plain head alone is not sound either: a destination could send a genuine
receipt for message 8 whose plain head says it answers message 10, and message 10
would read delivered (review 11c). The store holds no key to open a receipt, so this
step, run inside the migration's transaction between the SQL file's two halves (its
``-- @step`` line), only marks each such ``(message, signer)`` row: it stays open with
the reason ``RECHECK_REASON``. The first gateway start opens the kept receipt with the
site's key and puts it through the v11 receipt check (gateway/relay/kept_receipts.py,
gateway/store/kept.py), which closes the row or says why not.

Rules:
- A kept receipt counts only if it was received here (``received_from`` set), is of
  class ``receipt``, its inbound item is acked and the last ``acked`` history row says
  ``receipt`` (what the origin wrote for a verified receipt, and only for one); its head
  parses, names the same origin as its row, and has the row's digest; its plain head
  answers a message sent from here (``received_from`` NULL, not a receipt) that has an
  open destination row for its signer. Anything else is left as the SQL left it.
- The step closes nothing: it marks the rows such receipts answer (reason
  ``RECHECK_REASON``, outcome ``open``). Nothing fails a marked row until its re-check
  settles it (gateway/store/_common.py RECHECK_REASON).
- The same selection (``kept``) gives the first start its receipts to re-check, in the
  order they were acknowledged: the first one stands.
- Nothing is read twice: the open rows are read first, and if there are none the kept
  receipts are not read at all; receipts are read a page at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envelope.errors import EnvelopeError
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS
from gateway.store._common import RECHECK_REASON

STEP = "v11_kept_receipts"
PAGE_ROWS = 500

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

# Mark one open row a kept receipt answers ({p} as above): it waits for the re-check.
_MARK = """
UPDATE destinations SET reason = {p1} WHERE message_id = {p2} AND site = {p3} AND outcome = 'open'
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


def sqlite_kept(c: sqlite3.Connection, open_rows: set[tuple[str, str]]) -> list[Kept]:
    """The kept receipts attributed to ``open_rows`` by their plain heads, acknowledged
    first, first (none read when there are no rows)."""
    if not open_rows:
        return []
    kept: list[Kept] = []
    after = ""
    sql = _qmarks(_KEPT)
    while True:
        rows = c.execute(sql, (after, PAGE_ROWS)).fetchall()
        kept += [k for row in rows if (k := attribute(row, open_rows)) is not None]
        if len(rows) < PAGE_ROWS:
            break
        after = rows[-1][0]
    return in_order(kept)


def sqlite_step(c: sqlite3.Connection) -> None:
    """Run the step on a SQLite store, inside the caller's transaction."""
    open_rows = {(m, s) for m, s in c.execute(_OPEN).fetchall()}
    mark = _qmarks(_MARK)
    for k in sqlite_kept(c, open_rows):
        c.execute(mark, (RECHECK_REASON, k.answers, k.site))


def _dollars(sql: str) -> str:
    return sql.format(p1="$1", p2="$2", p3="$3", p4="$4", p5="$5", p6="$6")


async def postgres_kept(conn: Any, open_rows: set[tuple[str, str]]) -> list[Kept]:
    """sqlite_kept on a PostgreSQL store (an asyncpg connection)."""
    if not open_rows:
        return []
    kept: list[Kept] = []
    after = ""
    sql = _dollars(_KEPT)
    while True:
        rows = await conn.fetch(sql, after, PAGE_ROWS)
        kept += [k for row in rows if (k := attribute(tuple(row), open_rows)) is not None]
        if len(rows) < PAGE_ROWS:
            break
        after = rows[-1]["message_id"]
    return in_order(kept)


async def postgres_step(conn: Any) -> None:
    """Run the step on a PostgreSQL store (an asyncpg connection), inside the caller's
    transaction."""
    open_rows = {(r["message_id"], r["site"]) for r in await conn.fetch(_OPEN)}
    mark = _dollars(_MARK)
    for k in await postgres_kept(conn, open_rows):
        await conn.execute(mark, RECHECK_REASON, k.answers, k.site)
