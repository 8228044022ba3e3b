"""Claiming a peer's due work (queued, deferred and due, or a lease run out), one
implementation for both backends over the store's driver (sql/queries/claim*.sql).

The strategy stays each backend's own, in its ``claim`` query:

- PostgreSQL claims in one statement: it reads the due rows in claim order skipping
  those another claimer holds (``FOR UPDATE SKIP LOCKED``), leases them through
  ``lease_owner`` / ``lease_until`` and logs them, so concurrent claimers never get the
  same delivery and a dead sender's work comes back once its lease runs out;
- SQLite's single writer holds the whole database: its query only reads the due rows
  (an index walk), and :func:`_take` leases and logs them in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.store._common import aware, reclaim_reason
from gateway.store.driver import Conn, OnDriver, Row, sql, when
from gateway.store.records import Claimed, OutState


async def _take(
    c: Conn, rows: list[Row], peer: str, owner: str, until: datetime, at: datetime
) -> None:
    """SQLite: lease and log the due rows read (as PostgreSQL's claim query does)."""
    q = sql(c, "claim")
    key = {"peer": peer, "owner": owner, "until": until, "now": at}
    await c.executemany(q.take, [{"message_id": r[0], **key} for r in rows])
    history = [
        {
            "message_id": r[0],
            "peer": peer,
            "state": OutState.SENDING.value,
            "reason": reclaim_reason(r[1], r[2]),
            "at": at,
        }
        for r in rows
    ]
    await c.executemany(sql(c, "rows").add_history, history)


class Claiming(OnDriver):
    """claim of the Store protocol."""

    async def claim(
        self, *, peer: str, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[Claimed]:
        at = aware(now)
        until = at + timedelta(seconds=lease_seconds)
        if limit <= 0:
            return []
        q = self._sql("claim")

        async def tx(c: Conn) -> list[Claimed]:
            rows = await c.fetch(q.claim, peer=peer, now=at, limit=limit, owner=owner, until=until)
            if c.backend == "sqlite":  # read only so far: take them (see the docstring)
                await _take(c, rows, peer, owner, until, at)
            return [
                Claimed(r[0], peer, int(r[3]) + 1, r[4], when(r[5]), r[6], r[7], r[8], r[9])
                for r in rows
            ]

        return await self._db.transaction(tx)
