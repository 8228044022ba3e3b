"""The PostgreSQL store's row primitives: time conversion, history rows, state moves.

Each function takes a connection inside a transaction the caller opened
(postgres_common.py and postgres_destinations.py build on these).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

Conn = Any  # asyncpg.Connection (asyncpg ships no type information)

SET_STATE = """
WITH moved AS (
    UPDATE deliveries
    SET state = $2, next_attempt = $3, lease_owner = NULL, lease_until = NULL,
        last_reason = $4, updated_at = $5
    WHERE message_id = $1 AND state = ANY($6::text[])
      AND ($7::text[] IS NULL OR peer = ANY($7::text[]))
    RETURNING peer
), logged AS (
    INSERT INTO history (message_id, peer, state, reason, at)
    SELECT $1, peer, $2, $4, $5 FROM moved ORDER BY peer
)
SELECT count(*) FROM moved
"""


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def opt_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


async def add_history(
    conn: Conn, message_id: str, peer: str | None, state: str, reason: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO history (message_id, peer, state, reason, at) VALUES ($1, $2, $3, $4, $5)",
        message_id,
        peer,
        state,
        reason,
        at,
    )


async def set_state(
    conn: Conn,
    message_id: str,
    *,
    to: str,
    from_states: Sequence[str],
    reason: str,
    at: datetime,
    next_attempt: datetime | None = None,
    peers: Sequence[str] | None = None,
) -> int:
    """Move the message's deliveries in ``from_states`` (to ``peers`` only, if given) to
    ``to`` (lease dropped); history."""
    moved = await conn.fetchval(
        SET_STATE,
        message_id,
        to,
        next_attempt,
        reason,
        at,
        [str(s) for s in from_states],
        None if peers is None else [str(p) for p in peers],
    )
    return int(moved)
