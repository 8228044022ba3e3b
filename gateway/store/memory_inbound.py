"""The destination's part of the in-memory store: inbound items and their settlement, and
what a receipt is checked against (as inbound.py for the SQL backends)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import DUPLICATE_RECEIPT, check_limit, check_record
from gateway.store.memory_common import accept_one, fail_undelivered
from gateway.store.memory_destinations import close_open, receipted, record_receipt_rows
from gateway.store.memory_tables import MemoryTables, Tables, add_history, utc
from gateway.store.records import (
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    MessageRoute,
    ReceiptRecord,
    SentMessage,
    Settled,
    StoreError,
)


def _settle_one(t: Tables, o: InboundOutcome, at: datetime) -> Settled:
    new = InState(o.state).value
    item = t.inbound.get(o.message_id)
    if item is None or item.state != InState.RECEIVED.value:
        return Settled(applied=False, delivered=False)
    item.state, item.updated_at = new, at
    if o.receipt is not None:
        record, hops = o.receipt
        accept_one(t, record, hops, False, None, at)
    reason = o.reason
    outcome = None
    if o.delivered is not None:
        (outcome,) = record_receipt_rows(t, [o.delivered], at, legacy=True)
        if outcome.status == "duplicate":
            reason = DUPLICATE_RECEIPT.format(site=o.delivered.site)
    if o.own_receipt is not None:
        record_receipt_rows(t, [o.own_receipt], at)  # unknown (no row here): nothing to do
    closed = None
    if o.failed is not None:
        if o.failed_site is not None:
            closed = close_open(t, o.message_id, sites=[o.failed_site], reason=o.failed, at=at)
            closed = closed if closed.sites else None
        else:
            closed = fail_undelivered(t, o.message_id, None, o.failed, at)
    add_history(t, o.message_id, None, new, reason, at)
    return Settled(
        applied=True,
        delivered=outcome is not None and outcome.status == "recorded",
        receipt=outcome,
        closed=closed,
    )


def _received(t: Tables) -> list[tuple[datetime, str]]:
    """(received at, message id) of the items still ``received``, oldest first."""
    return sorted(
        (i.received_at, mid)
        for mid, i in t.inbound.items()
        if i.state == InState.RECEIVED.value and mid in t.envelopes
    )


class MemoryInbound(MemoryTables):
    """The inbound methods of the Store protocol."""

    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None:
        at = utc(now)
        new = InState(state).value

        def tx(t: Tables) -> None:
            item = t.inbound.get(message_id)
            if item is None:
                raise StoreError(f"no inbound item {message_id}")
            if item.state == new:
                return
            item.state, item.updated_at = new, at
            add_history(t, message_id, None, new, reason, at)

        await self._write(tx)

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        check_limit(limit)
        wanted = None if state is None else InState(state).value
        cursor = None if after is None else (utc(after[0]), after[1])

        def q(t: Tables) -> list[InboxItem]:
            rows = sorted(
                (i.received_at, mid, i.state)
                for mid, i in t.inbound.items()
                if mid in t.envelopes and (wanted is None or i.state == wanted)
            )
            if cursor is not None:
                rows = [r for r in rows if (r[0], r[1]) > cursor]
            rows = rows[:limit]
            out = []
            for received, mid, item_state in rows:
                env = t.envelopes[mid]
                out.append(
                    InboxItem(mid, env.origin, item_state, received, env.size, env.doc_class)
                )
            return out

        return await self._read(q)

    async def inbound_received(self, *, limit: int, max_bytes: int) -> list[EnvelopeRecord]:
        if limit <= 0:
            return []

        def q(t: Tables) -> list[EnvelopeRecord]:
            out = []
            upto = 0
            for _, mid in _received(t)[:limit]:
                env = t.envelopes[mid]
                upto += env.size
                if upto <= max_bytes or upto == env.size:
                    out.append(env.record())
            return out

        return await self._read(q)

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
        at = utc(now)
        return await self._write(lambda t: [_settle_one(t, o, at) for o in batch])

    async def sent_digests(self, message_ids: Sequence[str]) -> dict[str, SentMessage]:
        ids = list(dict.fromkeys(message_ids))

        def q(t: Tables) -> dict[str, SentMessage]:
            out = {}
            for mid in ids:
                env = t.envelopes.get(mid)
                if env is None:
                    continue
                done = receipted(t, mid)
                if env.receipt is not None and env.doc_class != "receipt" and not t.has_rows(mid):
                    # A message without destination rows, receipted (legacy: one receipt).
                    done = dict.fromkeys(env.destinations, b"")
                digests = frozenset({env.digest, *env.superseded})
                out[mid] = SentMessage(
                    env.destinations,
                    digests,
                    done,
                    env.digest,
                    env.received_from is None,
                    env.doc_class,
                )
            return out

        return await self._read(q) if ids else {}

    async def superseded_digests(self, message_ids: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
        ids = list(dict.fromkeys(message_ids))

        def q(t: Tables) -> dict[str, tuple[bytes, ...]]:
            found = ((mid, t.envelopes.get(mid)) for mid in ids)
            return {mid: env.superseded for mid, env in found if env and env.superseded}

        return await self._read(q) if ids else {}

    async def superseded_heads(self, message_id: str) -> dict[bytes, bytes]:
        def q(t: Tables) -> dict[bytes, bytes]:
            return {
                digest: head
                for (mid, digest), head in t.superseded_heads.items()
                if mid == message_id
            }

        return await self._read(q)

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        ids = list(dict.fromkeys(message_ids))

        def q(t: Tables) -> dict[str, MessageRoute]:
            found = ((mid, t.envelopes.get(mid)) for mid in ids)
            return {
                mid: MessageRoute(env.origin, env.destinations, env.doc_class, receipted(t, mid))
                for mid, env in found
                if env is not None
            }

        return await self._read(q) if ids else {}
