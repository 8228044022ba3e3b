"""The destination's part of the store, one implementation for both backends over the
store's driver (sql/queries/inbound*.sql): inbound items and their settlement, and what
a receipt is checked against (sent digests, superseded copies, message routes).

Local delivery reads a batch of ``received`` envelopes (:meth:`inbound_received`), opens
them outside the store, and settles the whole batch in one transaction
(:meth:`inbound_settle`): the items still ``received`` (locked on PostgreSQL, in id
order; SQLite's single writer holds them anyway), each one's first occurrence in the
batch applying, then in turn for those: the receipt envelopes to send back accepted
(accept.py, each backend's own strategy), the receipts they carry recorded, the refused
ones' rows closed, and the items moved on with their history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import DUPLICATE_RECEIPT, aware, check_limit, check_record, split_digests
from gateway.store.accept import AcceptItem, accept_rows
from gateway.store.destinations import close_open, has_rows, receipted, record_receipt_rows
from gateway.store.driver import Conn, OnDriver, sql, strs, when
from gateway.store.outbound import envelope_record, fail_undelivered
from gateway.store.records import (
    Closed,
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    MessageRoute,
    ReceiptOutcome,
    ReceiptRecord,
    SentMessage,
    Settled,
    StoreError,
)
from gateway.store.rows import add_history


async def _settle(c: Conn, batch: Sequence[InboundOutcome], at: datetime) -> list[Settled]:
    q = sql(c, "inbound")
    ids = list(dict.fromkeys(o.message_id for o in batch))
    waiting = {r[0] for r in await c.fetch(q.waiting, ids=ids)}
    applied: list[int] = []
    for i, o in enumerate(batch):
        if o.message_id in waiting:
            waiting.discard(o.message_id)
            applied.append(i)
    reasons = [o.reason for o in batch]
    receipts: list[AcceptItem] = []
    proofs: list[tuple[int, ReceiptRecord]] = []
    own: list[ReceiptRecord] = []
    for i in applied:
        o = batch[i]
        if o.receipt is not None:
            receipts.append((o.receipt[0], o.receipt[1], False, None))
        if o.delivered is not None:
            proofs.append((i, o.delivered))
        if o.own_receipt is not None:
            own.append(o.own_receipt)
    if receipts:
        await accept_rows(c, receipts, at)
    recorded: dict[int, ReceiptOutcome] = {}
    if proofs:
        done = await record_receipt_rows(c, [p for _, p in proofs], at, legacy=True)
        for (i, proof), outcome in zip(proofs, done, strict=True):
            recorded[i] = outcome
            if outcome.status == "duplicate":
                reasons[i] = DUPLICATE_RECEIPT.format(site=proof.site)
    if own:  # unknown (no row for this site here): nothing to do
        await record_receipt_rows(c, own, at)
    closed: dict[int, Closed] = {}
    for i in applied:
        o = batch[i]
        if o.failed is None:
            continue
        if o.failed_site is not None:
            shut = await close_open(c, o.message_id, sites=[o.failed_site], reason=o.failed, at=at)
            if shut.sites:
                closed[i] = shut
        else:
            legacy = await fail_undelivered(c, o.message_id, None, o.failed, at)
            if legacy is not None:
                closed[i] = legacy
    moves = [
        {"message_id": batch[i].message_id, "state": InState(batch[i].state).value, "at": at}
        for i in applied
    ]
    await c.executemany(q.settle, moves)
    history = [
        {**m, "peer": None, "reason": reasons[i]} for i, m in zip(applied, moves, strict=True)
    ]
    await c.executemany(sql(c, "rows").add_history, history)
    done_set = set(applied)
    return [
        Settled(
            applied=i in done_set,
            delivered=i in recorded and recorded[i].status == "recorded",
            receipt=recorded.get(i),
            closed=closed.get(i),
        )
        for i in range(len(batch))
    ]


def _ids(message_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(message_ids))


class Inbound(OnDriver):
    """The inbound methods of the Store protocol."""

    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None:
        q, at = self._sql("inbound"), aware(now)
        new = InState(state).value

        async def tx(c: Conn) -> None:
            row = await c.fetchrow(q.state, message_id=message_id)
            if row is None:
                raise StoreError(f"no inbound item {message_id}")
            if row[0] == new:
                return
            await c.execute(q.set_state, message_id=message_id, state=new, at=at)
            await add_history(c, message_id, None, new, reason, at)

        await self._db.transaction(tx)

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        check_limit(limit)
        q = self._sql("inbound")
        wanted = None if state is None else InState(state).value
        page = {
            "any_state": wanted is None,
            "state": wanted,
            "from_start": after is None,
            "after_at": None if after is None else aware(after[0]),
            "after_id": None if after is None else after[1],
            "limit": limit,
        }

        async def read(c: Conn) -> list[InboxItem]:
            rows = await c.fetch(q.inbox, **page)
            return [InboxItem(r[0], r[1], r[2], when(r[3]), r[4], r[5]) for r in rows]

        return await self._db.read(read)

    async def inbound_received(self, *, limit: int, max_bytes: int) -> list[EnvelopeRecord]:
        if limit <= 0:
            return []
        q = self._sql("inbound")

        async def read(c: Conn) -> list[EnvelopeRecord]:
            rows = await c.fetch(q.received, limit=limit, max_bytes=max_bytes)
            return [envelope_record(r) for r in rows]

        return await self._db.read(read)

    async def inbound_settle(
        self, outcomes: Sequence[InboundOutcome], *, now: datetime
    ) -> list[Settled]:
        batch = list(outcomes)
        for o in batch:
            InState(o.state)
            if o.receipt is not None:
                check_record(o.receipt[0])
            for item in (o.delivered, o.own_receipt):
                if item is not None and not isinstance(item, ReceiptRecord):
                    raise StoreError(f"{o.message_id}: not a ReceiptRecord: {item!r}")
        if not batch:
            return []
        at = aware(now)

        async def tx(c: Conn) -> list[Settled]:
            return await _settle(c, batch, at)

        return await self._db.transaction(tx)

    async def sent_digests(self, message_ids: Sequence[str]) -> dict[str, SentMessage]:
        ids = _ids(message_ids)
        if not ids:
            return {}
        q = self._sql("inbound")

        async def read(c: Conn) -> dict[str, SentMessage]:
            rows = await c.fetch(q.sent, ids=ids)
            done = await receipted(c, ids)
            out = {}
            for r in rows:
                mid, destinations, doc_class = r[0], strs(r[1]), r[4]
                sites = done.get(mid, {})
                if (
                    not sites
                    and r[3] is not None
                    and doc_class != "receipt"
                    and not await has_rows(c, mid)
                ):
                    # A message without destination rows, receipted (legacy: one receipt).
                    sites = dict.fromkeys(destinations, b"")
                # The stored copy's digest, and those of the copies it replaced here
                # (re-sealed or re-signed after one may have been delivered: v10).
                stored = bytes(r[2])
                digests = frozenset({stored, *split_digests(r[5])})
                out[mid] = SentMessage(destinations, digests, sites, stored, bool(r[6]), doc_class)
            return out

        return await self._db.read(read)

    async def superseded_digests(self, message_ids: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
        ids = _ids(message_ids)
        if not ids:
            return {}
        q = self._sql("inbound")

        async def read(c: Conn) -> dict[str, tuple[bytes, ...]]:
            return {r[0]: split_digests(r[1]) for r in await c.fetch(q.superseded, ids=ids)}

        return await self._db.read(read)

    async def superseded_heads(self, message_id: str) -> dict[bytes, bytes]:
        q = self._sql("inbound")

        async def read(c: Conn) -> dict[bytes, bytes]:
            rows = await c.fetch(q.superseded_heads, message_id=message_id)
            return {bytes(r[0]): bytes(r[1]) for r in rows}

        return await self._db.read(read)

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        ids = _ids(message_ids)
        if not ids:
            return {}
        q = self._sql("inbound")

        async def read(c: Conn) -> dict[str, MessageRoute]:
            rows = await c.fetch(q.routes, ids=ids)
            done = await receipted(c, ids)
            return {r[0]: MessageRoute(r[1], strs(r[2]), r[3], done.get(r[0], {})) for r in rows}

        return await self._db.read(read)
