"""The SQLite store's row primitives: the time encoding, history rows, state moves.

Each function takes the store's connection inside a transaction the caller opened
(sqlite_common.py and sqlite_destinations.py build on these).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.store._common import aware


def ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_dt(text: str | None) -> datetime | None:
    return None if text is None else dt(text)


def add_history(
    c: sqlite3.Connection,
    message_id: str,
    peer: str | None,
    state: str,
    reason: str,
    at: str,
) -> None:
    c.execute(
        "INSERT INTO history (message_id, peer, state, reason, at) VALUES (?, ?, ?, ?, ?)",
        (message_id, peer, state, reason, at),
    )


def set_state(
    c: sqlite3.Connection,
    message_id: str,
    *,
    to: str,
    from_states: Sequence[str],
    reason: str,
    at: str,
    next_attempt: str | None = None,
    peers: Sequence[str] | None = None,
) -> int:
    """Move the message's deliveries in ``from_states`` (to ``peers`` only, if given) to
    ``to`` (lease dropped); history."""
    rows = c.execute(
        "UPDATE deliveries SET state = ?, next_attempt = ?, lease_owner = NULL,"
        " lease_until = NULL, last_reason = ?, updated_at = ?"
        " WHERE message_id = ? AND state IN (SELECT value FROM json_each(?))"
        " AND (? IS NULL OR peer IN (SELECT value FROM json_each(?))) RETURNING peer",
        (
            to,
            next_attempt,
            reason,
            at,
            message_id,
            json.dumps([str(s) for s in from_states]),
            None if peers is None else 1,
            json.dumps([str(p) for p in peers or ()]),
        ),
    ).fetchall()
    for (peer,) in sorted(rows):
        add_history(c, message_id, peer, to, reason, at)
    return len(rows)
