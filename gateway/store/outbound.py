"""Outbound work and receipts, one implementation for both backends over the store's
driver (sql/queries/outbound*.sql): the envelope, due peers, forwarded, defer, fail,
expire, delivered, receipt.

Claiming is in claim.py and accepting in accept.py, each keeping its backend's strategy
(PostgreSQL ``FOR UPDATE SKIP LOCKED`` and unnest batches; SQLite's index walk and item
by item under its single writer). Here, by strategy: PostgreSQL marks a courier's
forwarded batch in one statement (``forwarded_batch``), SQLite row by row; and
PostgreSQL locks the expired messages' envelope rows first (``lock_expired``, rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import (
    EXPIRED_REASON,
    RECEIPT_REASON,
    RECHECK_REASON,
    TOMBSTONE_GRACE,
    UNDELIVERED,
    aware,
)
from gateway.store.destinations import close_open, record_ack, record_receipt_rows
from gateway.store.driver import Conn, OnDriver, Row, opt_when, sql, strs, when
from gateway.store.records import Closed, EnvelopeRecord, OutState, ReceiptRecord, StoreError
from gateway.store.rows import add_histories, add_history, exists, lock_messages


async def fail_undelivered(
    c: Conn,
    message_id: str,
    peer: str | None,
    reason: str,
    at: datetime,
    *,
    owner: str | None = None,
) -> Closed | None:
    """Fail the message's undelivered deliveries (to ``peer``, or all) and close its open
    destinations through ``peer`` (or all of them). With ``owner``, only a delivery still
    ``sending`` under that lease, and nothing else if there is none. None if nothing
    changed. Raises StoreError for an unknown message."""
    if not await lock_messages(c, [message_id]):  # the envelope row first (rows.py)
        raise StoreError(f"unknown message {message_id}")
    rows = await c.fetch(
        sql(c, "outbound").fail,
        message_id=message_id,
        reason=reason,
        at=at,
        undelivered=list(UNDELIVERED),
        all_peers=peer is None,
        peer=peer,
        any_owner=owner is None,
        owner=owner,
    )
    failed = sorted(r[0] for r in rows)
    if owner is not None and not failed:
        return None  # the try's answer came too late: the copy was replaced meanwhile
    await add_histories(c, message_id, failed, OutState.FAILED.value, reason, at)
    closed = await close_open(
        c, message_id, hops=None if peer is None else [peer], reason=reason, at=at
    )
    if not failed and not closed.sites:
        return None
    return closed


def envelope_record(r: Row) -> EnvelopeRecord:
    """An envelope as read by the ``get_envelope`` columns (outbound.sql; inbound.sql's
    ``received`` reads the same)."""
    return EnvelopeRecord(
        message_id=r[0],
        origin=r[1],
        destinations=strs(r[2]),
        digest=r[3],
        created=when(r[4]),
        expires=when(r[5]),
        priority=r[6],
        received_from=r[7],
        data=r[8],
        doc_class=r[9],
        chain=r[10],
    )


class Outbound(OnDriver):
    """The outbound and receipt methods of the Store protocol, but claim and accept."""

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None:
        q = self._sql("outbound")

        async def read(c: Conn) -> EnvelopeRecord | None:
            r = await c.fetchrow(q.get_envelope, message_id=message_id)
            if r is None:
                return None
            return envelope_record(r)

        return await self._db.read(read)

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        q, at = self._sql("outbound"), aware(now)

        async def read(c: Conn) -> list[str]:
            return [r[0] for r in await c.fetch(q.peers, now=at)]

        return await self._db.read(read)

    async def next_due(self, *, now: datetime) -> datetime | None:
        q = self._sql("outbound")
        aware(now)

        async def read(c: Conn) -> datetime | None:
            return opt_when(await c.fetchval(q.next_due))

        return await self._db.read(read)

    async def forwarded(
        self,
        items: Sequence[tuple[str, str]],
        *,
        owner: str,
        now: datetime,
        reason: str = "",
        receipts: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        q, at = self._sql("outbound"), aware(now)
        pairs = list(items)
        proofs = list(receipts)
        if not pairs and not proofs:
            return

        async def tx(c: Conn) -> None:
            if pairs and c.backend == "postgres":
                await c.execute(
                    q.forwarded_batch,
                    mids=[m for m, _ in pairs],
                    peers=[p for _, p in pairs],
                    owner=owner,
                    reason=reason,
                    at=at,
                )
            else:
                for message_id, peer in pairs:
                    key = {"message_id": message_id, "peer": peer}
                    if await c.execute(q.forwarded_one, owner=owner, reason=reason, at=at, **key):
                        await add_history(c, message_id, peer, OutState.FORWARDED.value, reason, at)
            # A proof for a message not stored here (deleted meanwhile) records nothing;
            # the first proof of a message stands.
            if proofs and c.backend == "postgres":
                first: dict[str, bytes] = {}
                for message_id, proof in proofs:
                    first.setdefault(message_id, proof)
                await c.execute(
                    q.record_acks,
                    mids=list(first),
                    proofs=list(first.values()),
                    reason=RECEIPT_REASON,
                    at=at,
                )
            else:
                for message_id, proof in proofs:
                    await record_ack(c, message_id, proof, at)

        await self._db.transaction(tx)

    async def defer(
        self,
        message_id: str,
        peer: str,
        *,
        owner: str,
        reason: str,
        next_attempt: datetime,
        now: datetime,
    ) -> None:
        q, at, due = self._sql("outbound"), aware(now), aware(next_attempt)

        async def tx(c: Conn) -> None:
            moved = await c.execute(
                q.defer,
                message_id=message_id,
                peer=peer,
                owner=owner,
                reason=reason,
                next_attempt=due,
                at=at,
            )
            if moved:
                await add_history(c, message_id, peer, OutState.DEFERRED.value, reason, at)

        await self._db.transaction(tx)

    async def fail(
        self,
        message_id: str,
        peer: str | None,
        *,
        reason: str,
        now: datetime,
        owner: str | None = None,
    ) -> Closed | None:
        at = aware(now)

        async def tx(c: Conn) -> Closed | None:
            return await fail_undelivered(c, message_id, peer, reason, at, owner=owner)

        return await self._db.transaction(tx)

    async def expire(self, *, now: datetime) -> list[Closed]:
        q, at = self._sql("outbound"), aware(now)
        states = {"undelivered": list(UNDELIVERED), "recheck": RECHECK_REASON}

        async def tx(c: Conn) -> list[Closed]:
            if c.backend == "postgres":  # the envelope rows first (rows.py: lock order)
                await c.fetch(q.lock_expired, now=at, **states)
            rows = await c.fetch(q.expire, now=at, reason=EXPIRED_REASON, **states)
            failed: dict[str, list[str]] = {}
            for message_id, peer in sorted((r[0], r[1]) for r in rows):
                await add_history(c, message_id, peer, OutState.FAILED.value, EXPIRED_REASON, at)
                failed.setdefault(message_id, []).append(peer)
            # The origin closes every open destination of an expired message (forwarded
            # ones too); a hub only those whose hop row failed now. A row waiting for its
            # kept receipt's re-check (RECHECK_REASON) waits for it (close_open).
            origin = {
                r[0] for r in await c.fetch(q.expired_at_origin, now=at, recheck=RECHECK_REASON)
            }
            closed = []
            for message_id in sorted(origin | set(failed)):
                hops = None if message_id in origin else failed[message_id]
                closed.append(
                    await close_open(c, message_id, hops=hops, reason=EXPIRED_REASON, at=at)
                )
            # Tombstones of deleted messages are kept until their expiry (and a grace).
            await c.execute(q.forget_tombstones, before=at - TOMBSTONE_GRACE)
            return closed

        return await self._db.transaction(tx)

    async def delivered(
        self,
        message_id: str,
        *,
        receipt: bytes,
        now: datetime,
        site: str | None = None,
        receipt_digest: bytes | None = None,
        receipt_for: bytes | None = None,
    ) -> bool:
        q, at = self._sql("outbound"), aware(now)

        async def tx(c: Conn) -> bool:
            if not await exists(c, message_id):
                raise StoreError(f"unknown message {message_id}")
            sites = [r[0] for r in await c.fetch(q.sites, message_id=message_id)]
            which = site
            if which is None and len(sites) > 1:
                raise StoreError(
                    f"{message_id} has {len(sites)} destinations: name the one that receipted it"
                )
            if which is None and sites:
                which = sites[0]
            item = ReceiptRecord(
                message_id, which or "", receipt_digest or b"", receipt_for, receipt
            )
            (done,) = await record_receipt_rows(c, [item], at, legacy=which is None)
            if done.status == "unknown":
                raise StoreError(f"{which} is not a destination of {message_id} here")
            return done.status == "recorded"

        return await self._db.transaction(tx)

    async def receipt(self, message_id: str) -> bytes | None:
        q = self._sql("outbound")

        async def read(c: Conn) -> bytes | None:
            row = await c.fetchrow(q.receipt, message_id=message_id)
            if row is None:
                return None
            if row[0] is not None:
                return bytes(row[0])
            if int(row[1]) == 1 and row[2] is not None:
                return bytes(row[2])
            return None

        return await self._db.read(read)
