"""The operator's part of the SQLite store: hold, release, retry, delete (which leaves a
tombstone until the message expires), and the read-only views (queue, history, depths,
ping, durability).

A mixin of :class:`gateway.store.sqlite.SqliteStore`: every call runs through the
store's ``_read`` / ``_write`` (one thread, one ``BEGIN IMMEDIATE … COMMIT``).
"""

from __future__ import annotations

import json
import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from gateway.store._common import HOLDABLE, RETRYABLE
from gateway.store.base import OutState, QueueEntry, Transition
from gateway.store.sqlite_common import add_history, dt, opt_dt, set_state, ts
from gateway.store.sqlite_destinations import requeue

T = TypeVar("T")
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
# :todo = 1: only what is still to do (base.TODO_STATES, and a message sent from here
# forwarded with a destination through that hop still open; without destination rows,
# not receipted yet). The last two columns count the destinations through the hop.
# Keep in step with postgres_operator.py.
_QUEUE = """
SELECT d.message_id, d.peer, d.state, d.attempts, d.next_attempt, d.last_reason,
       e.origin, e.destinations, e.created, e.expires, e.priority, e.size,
       e.accepted_at, d.updated_at,
       (SELECT count(*) FROM destinations t
        WHERE t.message_id = d.message_id AND t.hop = d.peer AND t.outcome = 'open'),
       (SELECT count(*) FROM destinations t WHERE t.message_id = d.message_id AND t.hop = d.peer)
FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id
WHERE (:peer IS NULL OR d.peer = :peer) AND (:state IS NULL OR d.state = :state)
  AND (:todo = 0 OR d.state IN ('queued', 'sending', 'deferred', 'held', 'failed')
       OR (d.state = 'forwarded' AND e.received_from IS NULL AND e.doc_class <> 'receipt'
           AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id
                        AND t.hop = d.peer AND t.outcome = 'open')
                OR (e.receipt IS NULL AND NOT EXISTS (SELECT 1 FROM destinations t
                                                      WHERE t.message_id = d.message_id)))))
ORDER BY d.rank, d.created, d.message_id, d.peer
"""


class SqliteOperator:
    """The operator and read-only methods of the Store protocol."""

    path: Path

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def hold(
        self,
        message_id: str,
        *,
        now: datetime,
        reason: str,
        peers: Sequence[str] | None = None,
    ) -> int:
        at = ts(now)
        only = None if peers is None else list(peers)
        return await self._write(
            lambda c: set_state(
                c,
                message_id,
                to=OutState.HELD.value,
                from_states=HOLDABLE,
                reason=reason,
                at=at,
                peers=only,
            )
        )

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = ts(now)
        return await self._write(
            lambda c: set_state(
                c,
                message_id,
                to=OutState.QUEUED.value,
                from_states=[OutState.HELD.value],
                reason=reason,
                at=at,
            )
        )

    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = ts(now)
        return await self._write(
            lambda c: requeue(c, message_id, from_states=RETRYABLE, reason=reason, at=at)
        )

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = ts(now)

        def tx(c: sqlite3.Connection) -> int:
            # The tombstone outlives the envelope until its expiry: a copy replayed to
            # /v1/hop is then refused as deleted instead of stored again (accept_one).
            c.execute(
                "INSERT INTO tombstones (message_id, expires, deleted_at, reason)"
                " SELECT message_id, expires, ?, ? FROM envelopes"
                " WHERE message_id = ? AND expires > ?"
                " ON CONFLICT (message_id) DO NOTHING",
                (at, reason, message_id, at),
            )
            removed = c.execute(
                "DELETE FROM deliveries WHERE message_id = ?", (message_id,)
            ).rowcount
            inbound = c.execute("DELETE FROM inbound WHERE message_id = ?", (message_id,)).rowcount
            envelope = c.execute(
                "DELETE FROM envelopes WHERE message_id = ?", (message_id,)
            ).rowcount
            if removed or inbound or envelope:
                add_history(c, message_id, None, "deleted", reason, at)
            return removed

        return await self._write(tx)

    async def queue(
        self, *, peer: str | None = None, state: str | None = None, todo: bool = False
    ) -> list[QueueEntry]:
        def q(c: sqlite3.Connection) -> list[QueueEntry]:
            rows = c.execute(
                _QUEUE,
                {"peer": peer, "state": None if state is None else str(state), "todo": int(todo)},
            ).fetchall()
            return [
                QueueEntry(
                    message_id=r[0],
                    peer=r[1],
                    state=r[2],
                    attempts=r[3],
                    next_attempt=opt_dt(r[4]),
                    last_reason=r[5],
                    origin=r[6],
                    destinations=tuple(json.loads(r[7])),
                    created=dt(r[8]),
                    expires=dt(r[9]),
                    priority=r[10],
                    size=r[11],
                    accepted=dt(r[12]),
                    updated=dt(r[13]),
                    dest_open=int(r[14]),
                    dest_total=int(r[15]),
                )
                for r in rows
            ]

        return await self._read(q)

    async def history(self, message_id: str) -> list[Transition]:
        def q(c: sqlite3.Connection) -> list[Transition]:
            rows = c.execute(
                "SELECT at, peer, state, reason FROM history WHERE message_id = ? ORDER BY id",
                (message_id,),
            ).fetchall()
            return [Transition(dt(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._read(q)

    async def depths(self) -> dict[tuple[str, str], int]:
        def q(c: sqlite3.Connection) -> dict[tuple[str, str], int]:
            rows = c.execute(
                "SELECT peer, state, count(*) FROM deliveries GROUP BY peer, state"
            ).fetchall()
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._read(q)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def durability(self) -> dict[str, str]:
        def q(c: sqlite3.Connection) -> dict[str, str]:
            (mode,) = c.execute("PRAGMA journal_mode").fetchone()
            (sync,) = c.execute("PRAGMA synchronous").fetchone()
            (fks,) = c.execute("PRAGMA foreign_keys").fetchone()
            (busy,) = c.execute("PRAGMA busy_timeout").fetchone()
            return {
                "backend": "sqlite",
                "path": str(self.path),
                "journal_mode": str(mode).lower(),
                "synchronous": _SYNCHRONOUS_NAMES.get(int(sync), str(sync)),
                "synchronous_level": str(sync),
                "foreign_keys": "on" if fks else "off",
                "busy_timeout_ms": str(busy),
                "sqlite_version": sqlite3.sqlite_version,
            }

        return await self._read(q)
