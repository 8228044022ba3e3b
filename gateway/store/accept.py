"""Accepting envelopes, one implementation for both backends over the store's driver
(sql/queries/accept*.sql): accept and accept_many, and :func:`accept_rows`, which
inbound.py's settling runs too (a receipt envelope to send back).

A new message gets a delivery row per next hop (queued), an open destination row per
route, and an inbound item if it is delivered here; a relayed receipt envelope first
records its receipt for its destination at this hub, and is refused if that destination
took another one already (review 11b, F3). A message id repeated within a batch is a
duplicate of its first occurrence; a tombstoned one is ``deleted``.

How, by backend (the strategy, :func:`accept_rows`):

- SQLite takes the items one by one, a few statements each, under its single writer;
- PostgreSQL takes a whole batch in a few set-based statements, one round trip per kind
  of row whatever the batch size (``unnest`` of parallel arrays, accept.postgres.sql).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import aware, check_record, rank, second_relayed_receipt, unique_hops
from gateway.store.destinations import insert_routes, record_receipt_rows, relayed_receipt
from gateway.store.driver import Conn, OnDriver, sql
from gateway.store.records import Acceptance, EnvelopeRecord, InState, OutState, ReceiptRecord
from gateway.store.rows import add_histories, add_history, set_state

AcceptItem = tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]


async def accept_rows(c: Conn, items: Sequence[AcceptItem], at: datetime) -> list[Acceptance]:
    """accept() of every item (record, next hops, deliver here, hop ack), in order, in
    the transaction the caller opened."""
    if c.backend == "postgres":
        return await _accept_batch(c, items, at)
    return [await _accept_one(c, item, at) for item in items]


async def _refuse_second(
    c: Conn, second: Sequence[tuple[str, ReceiptRecord]]
) -> dict[str, Acceptance]:
    """Take back the receipt envelopes (message id, its receipt) this transaction inserted
    whose destination has a receipt already; their refusals by message id, naming the
    first receipt's digest."""
    q = sql(c, "accept")
    await c.execute(q.take_back, ids=[m for m, _ in second])
    out: dict[str, Acceptance] = {}
    for mid, r in second:
        first = await c.fetchval(q.first_receipt, message_id=r.message_id, site=r.site)
        why = second_relayed_receipt(r.site, r.message_id, first)
        out[mid] = Acceptance(new=False, hop_ack=None, refused=why)
    return out


async def _accept_one(c: Conn, item: AcceptItem, at: datetime) -> Acceptance:
    """SQLite's way: one item, a few statements."""
    record, next_hops, deliver_here, hop_ack = item
    q, mid = sql(c, "accept"), record.message_id
    if await c.fetchrow(q.tombstoned, message_id=mid) is not None:
        return Acceptance(new=False, hop_ack=None, deleted=True)
    created = aware(record.created)
    inserted = await c.execute(
        q.insert_envelope,
        message_id=mid,
        origin=record.origin,
        destinations=list(record.destinations),
        digest=record.digest,
        created=created,
        expires=aware(record.expires),
        priority=str(record.priority),
        received_from=record.received_from,
        size=len(record.data),
        data=record.data,
        hop_ack=hop_ack,
        at=at,
        doc_class=record.doc_class,
        chain=record.chain,
        escrow=record.escrow,
    )
    if not inserted:
        return Acceptance(new=False, hop_ack=await c.fetchval(q.hop_ack, message_id=mid))
    relayed = None if deliver_here else relayed_receipt(record)
    if relayed is not None:
        # Recorded first, inside this transaction: a second, different receipt from the
        # destination (checked by the hop against a store read before it, and passing
        # when two race) is refused here, neither stored nor queued (review 11b, F3).
        (done,) = await record_receipt_rows(c, [relayed], at, relayed=True)
        if done.status == "duplicate":
            return (await _refuse_second(c, [(mid, relayed)]))[mid]
    order = rank(record.priority)
    hops = unique_hops(next_hops)
    rows = [
        {"message_id": mid, "peer": p, "at": at, "rank": order, "created": created} for p in hops
    ]
    await c.executemany(q.queue_delivery, rows)
    await add_histories(c, mid, hops, OutState.QUEUED.value, "", at)
    await insert_routes(c, [record], at)
    if deliver_here:
        await c.execute(q.add_inbound, message_id=mid, at=at)
        await add_history(c, mid, None, InState.RECEIVED.value, "", at)
    return Acceptance(new=True, hop_ack=hop_ack)


async def _accept_batch(c: Conn, items: Sequence[AcceptItem], at: datetime) -> list[Acceptance]:
    """PostgreSQL's way: the whole batch in a few statements."""
    q = sql(c, "accept")
    records = [item[0] for item in items]
    ranks = [rank(r.priority) for r in records]  # refuses an unknown priority first
    inserted = await c.fetch(
        q.insert_envelopes,
        mids=[r.message_id for r in records],
        origins=[r.origin for r in records],
        destinations=[json.dumps(list(r.destinations)) for r in records],
        digests=[r.digest for r in records],
        created=[aware(r.created) for r in records],
        expires=[aware(r.expires) for r in records],
        priorities=[str(r.priority) for r in records],
        received_from=[r.received_from for r in records],
        sizes=[len(r.data) for r in records],
        data=[r.data for r in records],
        hop_acks=[item[3] for item in items],
        at=at,
        doc_classes=[r.doc_class for r in records],
        chains=[r.chain for r in records],
        escrows=[r.escrow for r in records],
    )
    new = {row[0] for row in inserted}
    first_ack: dict[str, bytes | None] = {}
    relayed: list[tuple[int, ReceiptRecord]] = []
    results: list[Acceptance | None] = []
    for index, (record, _, deliver_here, hop_ack) in enumerate(items):
        mid = record.message_id
        if mid in new and mid not in first_ack:
            first_ack[mid] = hop_ack
            results.append(Acceptance(new=True, hop_ack=hop_ack))
            answer = None if deliver_here else relayed_receipt(record)
            if answer is not None:
                relayed.append((index, answer))
        else:
            results.append(None)
    refused: dict[str, Acceptance] = {}
    if relayed:
        # Recorded first, inside this transaction (record_receipt_rows locks the answered
        # message's row): a second, different receipt from the destination, whose hop
        # check read the store before a racing first one committed, is refused here,
        # neither stored nor queued (review 11b, F3).
        done = await record_receipt_rows(c, [r for _, r in relayed], at, relayed=True)
        second = [
            (i, r) for (i, r), o in zip(relayed, done, strict=True) if o.status == "duplicate"
        ]
        if second:
            refused = await _refuse_second(c, [(records[i].message_id, r) for i, r in second])
            for i, _ in second:
                results[i] = refused[records[i].message_id]
    queued: list[tuple[str, str, int, datetime]] = []
    here: list[str] = []
    routed: list[EnvelopeRecord] = []
    for (record, hops, deliver_here, _), order, result in zip(items, ranks, results, strict=True):
        if result is not None and result.new:
            mid = record.message_id
            queued += [(mid, p, order, aware(record.created)) for p in unique_hops(hops)]
            if record.routes:
                routed.append(record)
            if deliver_here:
                here.append(mid)
    earlier = [
        r.message_id
        for r, a in zip(records, results, strict=True)
        if a is None and r.message_id not in first_ack
    ]
    deleted: set[str] = set()
    if earlier:
        rows = await c.fetch(q.hop_acks, ids=earlier)
        first_ack.update({row[0]: row[1] for row in rows})
        # A message the operator deleted: its tombstone kept it out of the insert.
        deleted = {row[0] for row in await c.fetch(q.tombstones, ids=earlier)}
    if queued:
        await c.execute(
            q.queue_deliveries,
            mids=[m for m, _, _, _ in queued],
            peers=[p for _, p, _, _ in queued],
            ranks=[o for _, _, o, _ in queued],
            created=[t for _, _, _, t in queued],
            at=at,
        )
    if here:
        await c.execute(q.add_inbounds, mids=here, at=at)
    await insert_routes(c, routed, at)
    return [
        a
        if a is not None
        else refused[r.message_id]
        if r.message_id in refused
        else Acceptance(new=False, hop_ack=None, deleted=True)
        if r.message_id in deleted
        else Acceptance(new=False, hop_ack=first_ack.get(r.message_id))
        for r, a in zip(records, results, strict=True)
    ]


class Accepting(OnDriver):
    """accept and accept_many of the Store protocol."""

    async def _accepted(self, c: Conn) -> None:
        """In the transaction that accepted a new message with next hops (not held): a
        store that tells its watchers so does it here (PostgresStore: NOTIFY)."""

    async def accept(
        self,
        record: EnvelopeRecord,
        *,
        next_hops: Sequence[str],
        deliver_here: bool,
        hop_ack: bytes | None,
        now: datetime,
        held: str | None = None,
    ) -> Acceptance:
        check_record(record)
        at = aware(now)
        item: AcceptItem = (record, list(next_hops), deliver_here, hop_ack)

        async def tx(c: Conn) -> Acceptance:
            (result,) = await accept_rows(c, [item], at)
            if result.new and held is not None:
                await set_state(
                    c,
                    record.message_id,
                    to=OutState.HELD.value,
                    from_states=[OutState.QUEUED.value],
                    reason=held,
                    at=at,
                )
            elif result.new and next_hops:
                await self._accepted(c)
            return result

        return await self._db.transaction(tx)

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        batch: list[AcceptItem] = [(r, list(h), d, a) for r, h, d, a in items]
        for record, _, _, _ in batch:
            check_record(record)
        at = aware(now)
        if not batch:
            return []

        async def tx(c: Conn) -> list[Acceptance]:
            return await accept_rows(c, batch, at)

        return await self._db.transaction(tx)
