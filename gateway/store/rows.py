"""The row primitives every store concern shares: history rows, state moves, and the
envelope row lock; each function takes the :class:`~gateway.store.driver.Conn` of a
transaction the caller opened (sql/queries/rows*.sql).

The lock, by backend (the one strategy that differs here):

- PostgreSQL: closing destination rows and completing a message happen under the
  message's envelope row lock (``FOR NO KEY UPDATE``, taken first, in message id order):
  two processes closing the last two open rows of one message then run one after the
  other, so the second sees the first's row closed and exactly one of them sets
  ``completed_at``. Every transaction that takes it takes it before it changes a
  delivery or destination row of the message, so it cannot deadlock against another
  one; accepting envelopes and the courier's hot path (claim, forwarded, defer) do not
  take it, and wait on no envelope row.
- SQLite: the store's single writer (``BEGIN IMMEDIATE``) holds the whole database, so
  :func:`lock_messages` only reads which of the messages exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from gateway.store.driver import Conn, sql


async def add_history(
    c: Conn, message_id: str, peer: str | None, state: str, reason: str, at: datetime
) -> None:
    await c.execute(
        sql(c, "rows").add_history,
        message_id=message_id,
        peer=peer,
        state=state,
        reason=reason,
        at=at,
    )


async def add_histories(
    c: Conn, message_id: str, peers: Iterable[str | None], state: str, reason: str, at: datetime
) -> None:
    """One history row per peer, in the order given."""
    rows = [
        {"message_id": message_id, "peer": p, "state": state, "reason": reason, "at": at}
        for p in peers
    ]
    await c.executemany(sql(c, "rows").add_history, rows)


async def set_state(
    c: Conn,
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
    ``to`` (lease dropped); history, by peer."""
    rows = await c.fetch(
        sql(c, "rows").set_state,
        message_id=message_id,
        to=to,
        next_attempt=next_attempt,
        reason=reason,
        at=at,
        from_states=[str(s) for s in from_states],
        all_peers=peers is None,
        peers=[str(p) for p in peers or ()],
    )
    moved = sorted(r[0] for r in rows)
    await add_histories(c, message_id, moved, to, reason, at)
    return len(moved)


async def lock_messages(c: Conn, message_ids: Iterable[str]) -> set[str]:
    """Lock the envelope rows of these messages (in id order; see the module docstring);
    return those that exist."""
    ids = sorted(set(message_ids))
    if not ids:
        return set()
    return {r[0] for r in await c.fetch(sql(c, "rows").lock_messages, ids=ids)}


async def exists(c: Conn, message_id: str) -> bool:
    return await c.fetchrow(sql(c, "rows").message_exists, message_id=message_id) is not None
