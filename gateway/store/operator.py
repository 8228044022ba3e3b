"""The operator's part of the store: hold, release, retry, delete (which leaves a
tombstone until the message expires), and the read-only views (queue, history, depths,
ping). One implementation for both backends over the store's driver
(sql/queries/operator.sql); ``durability`` is each backend's own (sqlite.py,
postgres.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import HOLDABLE, RETRYABLE, aware
from gateway.store.destinations import requeue
from gateway.store.driver import Conn, OnDriver, opt_when, strs, when
from gateway.store.records import TODO_STATES, OutState, QueueEntry, Transition
from gateway.store.rows import add_history, set_state


class Operator(OnDriver):
    """The operator and read-only methods of the Store protocol."""

    async def _move(
        self,
        message_id: str,
        *,
        to: str,
        from_states: Sequence[str],
        reason: str,
        now: datetime,
        peers: Sequence[str] | None = None,
    ) -> int:
        at = aware(now)

        async def tx(c: Conn) -> int:
            return await set_state(
                c, message_id, to=to, from_states=from_states, reason=reason, at=at, peers=peers
            )

        return await self._db.transaction(tx)

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

        async def tx(c: Conn) -> int:
            return await requeue(c, message_id, from_states=RETRYABLE, reason=reason, at=at)

        return await self._db.transaction(tx)

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        q, at = self._sql("operator"), aware(now)

        async def tx(c: Conn) -> int:
            # The tombstone first: it copies the envelope's expiry.
            await c.execute(q.tombstone, message_id=message_id, at=at, reason=reason)
            removed = await c.execute(q.delete_deliveries, message_id=message_id)
            inbound = await c.execute(q.delete_inbound, message_id=message_id)
            envelope = await c.execute(q.delete_envelope, message_id=message_id)
            if removed or inbound or envelope:
                await add_history(c, message_id, None, "deleted", reason, at)
            return removed

        return await self._db.transaction(tx)

    async def queue(
        self, *, peer: str | None = None, state: str | None = None, todo: bool = False
    ) -> list[QueueEntry]:
        q = self._sql("operator")
        wanted = None if state is None else str(state)

        async def read(c: Conn) -> list[QueueEntry]:
            rows = await c.fetch(
                q.queue,
                any_peer=peer is None,
                peer=peer,
                any_state=wanted is None,
                state=wanted,
                todo=bool(todo),
                todo_states=list(TODO_STATES),
            )
            return [
                QueueEntry(
                    message_id=r[0],
                    peer=r[1],
                    state=r[2],
                    attempts=r[3],
                    next_attempt=opt_when(r[4]),
                    last_reason=r[5],
                    origin=r[6],
                    destinations=strs(r[7]),
                    created=when(r[8]),
                    expires=when(r[9]),
                    priority=r[10],
                    size=r[11],
                    accepted=when(r[12]),
                    updated=when(r[13]),
                    dest_open=int(r[14]),
                    dest_total=int(r[15]),
                )
                for r in rows
            ]

        return await self._db.read(read)

    async def history(self, message_id: str) -> list[Transition]:
        q = self._sql("operator")

        async def read(c: Conn) -> list[Transition]:
            rows = await c.fetch(q.history, message_id=message_id)
            return [Transition(when(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._db.read(read)

    async def depths(self) -> dict[tuple[str, str], int]:
        q = self._sql("operator")

        async def read(c: Conn) -> dict[tuple[str, str], int]:
            return {(r[0], r[1]): int(r[2]) for r in await c.fetch(q.depths)}

        return await self._db.read(read)

    async def ping(self) -> None:
        q = self._sql("operator")

        async def read(c: Conn) -> None:
            await c.fetchval(q.ping)

        await self._db.read(read)
