"""The operator's part of the PostgreSQL store: hold, release, retry, delete (which leaves
a tombstone until the message expires), and the read-only views (queue, history,
depths, ping, durability).

A mixin of :class:`gateway.store.postgres.PostgresStore`: every call runs through
the store's ``_read`` / ``_write`` (one transaction, retried on a deadlock).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.store._common import HOLDABLE, RETRYABLE, aware
from gateway.store.base import TODO_STATES, OutState, QueueEntry, Transition
from gateway.store.postgres_common import Conn, add_history, opt_utc, set_state, utc
from gateway.store.postgres_destinations import requeue

T = TypeVar("T")

# $3: only what is still to do (see base.TODO_STATES, and a message sent from here
# forwarded with a destination through that hop still open; without destination rows,
# not receipted yet), $4: TODO_STATES. The last two columns count the destinations
# through the hop. Keep in step with sqlite_operator.py.
_QUEUE = """
SELECT d.message_id, d.peer, d.state, d.attempts, d.next_attempt, d.last_reason,
       e.origin, e.destinations, e.created, e.expires, e.priority, e.size,
       e.accepted_at, d.updated_at,
       (SELECT count(*) FROM destinations t
        WHERE t.message_id = d.message_id AND t.hop = d.peer AND t.outcome = 'open')
        AS dest_open,
       (SELECT count(*) FROM destinations t WHERE t.message_id = d.message_id AND t.hop = d.peer)
        AS dest_total
FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id
WHERE ($1::text IS NULL OR d.peer = $1) AND ($2::text IS NULL OR d.state = $2)
  AND (NOT $3::boolean OR d.state = ANY($4::text[])
       OR (d.state = 'forwarded' AND e.received_from IS NULL AND e.doc_class <> 'receipt'
           AND (EXISTS (SELECT 1 FROM destinations t WHERE t.message_id = d.message_id
                        AND t.hop = d.peer AND t.outcome = 'open')
                OR (e.receipt IS NULL AND NOT EXISTS (SELECT 1 FROM destinations t
                                                      WHERE t.message_id = d.message_id)))))
ORDER BY d.rank, d.created, d.message_id, d.peer
"""


class PostgresOperator:
    """The operator and read-only methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def _move(
        self,
        message_id: str,
        *,
        to: str,
        from_states: Sequence[str],
        reason: str,
        now: datetime,
        next_attempt: datetime | None = None,
        peers: Sequence[str] | None = None,
    ) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            return await set_state(
                conn,
                message_id,
                to=to,
                from_states=from_states,
                reason=reason,
                at=at,
                next_attempt=next_attempt,
                peers=peers,
            )

        return await self._write(tx)

    async def hold(
        self,
        message_id: str,
        *,
        now: datetime,
        reason: str,
        peers: Sequence[str] | None = None,
    ) -> int:
        return await self._move(
            message_id,
            to=OutState.HELD.value,
            from_states=HOLDABLE,
            reason=reason,
            now=now,
            peers=None if peers is None else list(peers),
        )

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int:
        return await self._move(
            message_id,
            to=OutState.QUEUED.value,
            from_states=[OutState.HELD.value],
            reason=reason,
            now=now,
        )

    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            return await requeue(conn, message_id, from_states=RETRYABLE, reason=reason, at=at)

        return await self._write(tx)

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = aware(now)

        async def tx(conn: Conn) -> int:
            # The tombstone outlives the envelope until its expiry: a copy replayed to
            # /v1/hop is then refused as deleted instead of stored again (accept_rows).
            await conn.execute(
                "INSERT INTO tombstones (message_id, expires, deleted_at, reason)"
                " SELECT message_id, expires, $2, $3 FROM envelopes"
                " WHERE message_id = $1 AND expires > $2"
                " ON CONFLICT (message_id) DO NOTHING",
                message_id,
                at,
                reason,
            )
            removed = await conn.fetchval(
                "WITH gone AS (DELETE FROM deliveries WHERE message_id = $1 RETURNING 1)"
                " SELECT count(*) FROM gone",
                message_id,
            )
            inbound = await conn.fetchval(
                "DELETE FROM inbound WHERE message_id = $1 RETURNING true", message_id
            )
            envelope = await conn.fetchval(
                "DELETE FROM envelopes WHERE message_id = $1 RETURNING true", message_id
            )
            if removed or inbound or envelope:
                await add_history(conn, message_id, None, "deleted", reason, at)
            return int(removed)

        return await self._write(tx)

    async def queue(
        self, *, peer: str | None = None, state: str | None = None, todo: bool = False
    ) -> list[QueueEntry]:
        wanted = None if state is None else str(state)

        async def q(conn: Conn) -> list[QueueEntry]:
            rows = await conn.fetch(_QUEUE, peer, wanted, todo, list(TODO_STATES))
            return [
                QueueEntry(
                    message_id=r["message_id"],
                    peer=r["peer"],
                    state=r["state"],
                    attempts=r["attempts"],
                    next_attempt=opt_utc(r["next_attempt"]),
                    last_reason=r["last_reason"],
                    origin=r["origin"],
                    destinations=tuple(r["destinations"]),
                    created=utc(r["created"]),
                    expires=utc(r["expires"]),
                    priority=r["priority"],
                    size=r["size"],
                    accepted=utc(r["accepted_at"]),
                    updated=utc(r["updated_at"]),
                    dest_open=int(r["dest_open"]),
                    dest_total=int(r["dest_total"]),
                )
                for r in rows
            ]

        return await self._read(q)

    async def history(self, message_id: str) -> list[Transition]:
        async def q(conn: Conn) -> list[Transition]:
            rows = await conn.fetch(
                "SELECT at, peer, state, reason FROM history WHERE message_id = $1 ORDER BY id",
                message_id,
            )
            return [Transition(utc(r["at"]), r["peer"], r["state"], r["reason"]) for r in rows]

        return await self._read(q)

    async def depths(self) -> dict[tuple[str, str], int]:
        async def q(conn: Conn) -> dict[tuple[str, str], int]:
            rows = await conn.fetch(
                "SELECT peer, state, count(*) AS n FROM deliveries GROUP BY peer, state"
            )
            return {(r["peer"], r["state"]): int(r["n"]) for r in rows}

        return await self._read(q)

    async def ping(self) -> None:
        async def q(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._read(q)

    async def durability(self) -> dict[str, str]:
        async def q(conn: Conn) -> dict[str, str]:
            r = await conn.fetchrow(
                "SELECT current_setting('synchronous_commit') AS synchronous_commit,"
                " current_setting('fsync') AS fsync,"
                " current_setting('full_page_writes') AS full_page_writes,"
                " current_setting('server_version') AS server_version,"
                " coalesce(current_schema(), '') AS schema"
            )
            return {"backend": "postgresql", **{k: str(v) for k, v in r.items()}}

        return await self._read(q)
