"""The operator's part of the in-memory store: hold, release, retry, delete (with its
tombstone), and the read-only views (queue, history, depths, ping, durability), as
operator.py has them for the SQL backends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import HOLDABLE, RETRYABLE
from gateway.store.memory_destinations import requeue
from gateway.store.memory_tables import (
    Delivery,
    Envelope,
    MemoryTables,
    Tables,
    Tombstone,
    add_history,
    set_state,
    utc,
)
from gateway.store.records import TODO_STATES, OutState, QueueEntry, Transition


def _todo(t: Tables, mid: str, peer: str, d: Delivery, env: Envelope) -> bool:
    """Still to do here (see Store.queue ``todo``; sql/queries/operator.sql ``queue``)."""
    if d.state in TODO_STATES:
        return True
    if d.state != OutState.FORWARDED.value:
        return False
    if env.received_from is not None or env.doc_class == "receipt":
        return False
    rows = t.rows_of(mid)
    if any(r.hop == peer and r.outcome == "open" for _, r in rows):
        return True
    return env.receipt is None and not rows


class MemoryOperator(MemoryTables):
    """The operator and read-only methods of the Store protocol."""

    async def hold(
        self,
        message_id: str,
        *,
        now: datetime,
        reason: str,
        peers: Sequence[str] | None = None,
    ) -> int:
        at = utc(now)
        only = None if peers is None else list(peers)
        return await self._write(
            lambda t: set_state(
                t,
                message_id,
                to=OutState.HELD.value,
                from_states=HOLDABLE,
                reason=reason,
                at=at,
                peers=only,
            )
        )

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = utc(now)
        return await self._write(
            lambda t: set_state(
                t,
                message_id,
                to=OutState.QUEUED.value,
                from_states=[OutState.HELD.value],
                reason=reason,
                at=at,
            )
        )

    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = utc(now)
        return await self._write(
            lambda t: requeue(t, message_id, from_states=RETRYABLE, reason=reason, at=at)
        )

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = utc(now)

        def tx(t: Tables) -> int:
            # The tombstone outlives the envelope until its expiry: a replayed copy is
            # then refused as deleted instead of stored again (accept_one).
            env = t.envelopes.get(message_id)
            if env is not None and env.expires > at and message_id not in t.tombstones:
                t.tombstones[message_id] = Tombstone(env.expires, at, reason)
            removed, inbound, envelope = t.remove_message(message_id)
            if removed or inbound or envelope:
                add_history(t, message_id, None, "deleted", reason, at)
            return removed

        return await self._write(tx)

    async def queue(
        self, *, peer: str | None = None, state: str | None = None, todo: bool = False
    ) -> list[QueueEntry]:
        wanted = None if state is None else str(state)

        def q(t: Tables) -> list[QueueEntry]:
            rows = []
            for (mid, p), d in t.deliveries.items():
                env = t.envelopes.get(mid)
                if env is None or (peer is not None and p != peer):
                    continue
                if (wanted is not None and d.state != wanted) or (
                    todo and not _todo(t, mid, p, d, env)
                ):
                    continue
                rows.append(((d.rank, d.created, mid, p), d, env))
            rows.sort(key=lambda r: r[0])
            out = []
            for (_, _, mid, p), d, env in rows:
                through = [r for _, r in t.rows_of(mid) if r.hop == p]
                out.append(
                    QueueEntry(
                        message_id=mid,
                        peer=p,
                        state=d.state,
                        attempts=d.attempts,
                        next_attempt=d.next_attempt,
                        last_reason=d.last_reason,
                        origin=env.origin,
                        destinations=env.destinations,
                        created=env.created,
                        expires=env.expires,
                        priority=env.priority,
                        size=env.size,
                        accepted=env.accepted_at,
                        updated=d.updated_at,
                        dest_open=sum(1 for r in through if r.outcome == "open"),
                        dest_total=len(through),
                    )
                )
            return out

        return await self._read(q)

    async def history(self, message_id: str) -> list[Transition]:
        def q(t: Tables) -> list[Transition]:
            return [h.transition() for h in t.history if h.message_id == message_id]

        return await self._read(q)

    async def depths(self) -> dict[tuple[str, str], int]:
        def q(t: Tables) -> dict[tuple[str, str], int]:
            out: dict[tuple[str, str], int] = {}
            for (_, peer), d in t.deliveries.items():
                out[(peer, d.state)] = out.get((peer, d.state), 0) + 1
            return out

        return await self._read(q)

    async def ping(self) -> None:
        await self._read(lambda t: None)

    async def durability(self) -> dict[str, str]:
        """Nothing is durable: the store lives in this process (tests, ``valise`` dev)."""
        await self._read(lambda t: None)
        return {"backend": "memory", "durable": "no: in this process's memory only"}
