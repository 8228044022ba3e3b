"""Delivery state and receipts per final destination, in the in-memory store (issue 11).

The same rules as destinations.py, on the tables of memory_tables.py: one row per final
destination (``outcome`` open / delivered / failed), the state it shows derived from its
hop row when read (the ``_state`` fragment of sql/queries/destinations.sql, spelt in
Python in :func:`dest_state`), a history row per change whose peer is the destination
site. Also the first start's re-check of receipts kept before v11 (kept.py): an
in-memory store is never migrated, so it has rows waiting for one only if a caller made
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import (
    LATE_RECEIPT_REASON,
    RECEIPT_REASON,
    RECHECK_REASON,
    RELAYED_RECEIPT_REASON,
)
from gateway.store.memory_tables import (
    Delivery,
    Dest,
    MemoryTables,
    Tables,
    add_history,
    opt_bytes,
    set_state,
    utc,
)
from gateway.store.migrate_v11 import attribute, in_order
from gateway.store.records import (
    Closed,
    Destination,
    EnvelopeRecord,
    InState,
    KeptReceipt,
    KeptReceipts,
    OutState,
    ReceiptOutcome,
    ReceiptRecord,
    StoreError,
)

_NOT_DELIVERED = [s.value for s in OutState if s != OutState.DELIVERED]


def dest_state(row: Dest, d: Delivery | None) -> str:
    """What a destination row shows (destinations.sql ``_state``)."""
    if row.outcome in ("delivered", "failed"):
        return row.outcome
    if row.hop is None or d is None or d.state in ("queued", "sending"):
        return "queued"
    if d.state == "delivered":
        return "forwarded"
    return d.state


def dest_reason(row: Dest, d: Delivery | None) -> str:
    """The reason shown with it (destinations.sql ``destinations``)."""
    if row.outcome != "open" or row.hop is None or d is None:
        return row.reason
    return d.last_reason


def hop_row(t: Tables, message_id: str, row: Dest) -> Delivery | None:
    return None if row.hop is None else t.deliveries.get((message_id, row.hop))


def insert_routes(t: Tables, record: EnvelopeRecord, at: datetime) -> None:
    """One open row per destination of ``record.routes`` (the first route of a site wins)."""
    routes: dict[str, str | None] = {}
    for site, hop in record.routes:
        routes.setdefault(str(site), None if hop is None else str(hop))
    for site, hop in routes.items():
        t.destinations[(record.message_id, site)] = Dest(hop=hop, updated_at=at)


def relayed_receipt(record: EnvelopeRecord) -> ReceiptRecord | None:
    """What a hub records for a receipt envelope it takes to relay (None: not one)."""
    if record.received_from is None or record.doc_class != "receipt" or not record.answers:
        return None
    return ReceiptRecord(
        record.answers, record.origin, record.digest, None, None, RELAYED_RECEIPT_REASON
    )


def counts(t: Tables, message_id: str) -> tuple[int, int]:
    rows = t.rows_of(message_id)
    return sum(1 for _, r in rows if r.outcome == "delivered"), len(rows)


def maybe_complete(t: Tables, message_id: str, at: datetime) -> bool:
    """Set ``completed_at`` if the message has rows, none open, and it is not set yet;
    True only for the call that set it."""
    env = t.envelopes.get(message_id)
    rows = t.rows_of(message_id)
    if env is None or env.completed_at is not None or not rows:
        return False
    if any(r.outcome == "open" for _, r in rows):
        return False
    env.completed_at = at
    return True


def _hop_done(t: Tables, message_id: str, hop: str, at: datetime) -> None:
    """Mark the hop row delivered once no destination through it lacks a receipt."""
    if all(r.outcome == "delivered" for _, r in t.rows_of(message_id) if r.hop == hop):
        set_state(
            t,
            message_id,
            to=OutState.DELIVERED.value,
            from_states=_NOT_DELIVERED,
            reason=RECEIPT_REASON,
            at=at,
            peers=[hop],
        )


def record_ack(t: Tables, message_id: str, proof: bytes, at: datetime) -> bool:
    """Store the proof of delivery of a message without destination rows (a receipt
    envelope sealed here: its next hop's signed acknowledgement) and mark every hop row
    of it delivered; False if one was recorded already, if the message has destination
    rows, or if it is not stored here (as the PostgreSQL store does)."""
    env = t.envelopes.get(message_id)
    if env is None or env.receipt is not None or t.has_rows(message_id):
        return False
    env.receipt = bytes(proof)
    moved = set_state(
        t,
        message_id,
        to=OutState.DELIVERED.value,
        from_states=_NOT_DELIVERED,
        reason=RECEIPT_REASON,
        at=at,
    )
    if not moved:
        add_history(t, message_id, None, OutState.DELIVERED.value, RECEIPT_REASON, at)
    return True


def _legacy_receipt(t: Tables, item: ReceiptRecord, at: datetime) -> ReceiptOutcome:
    """A message without destination rows: the receipt is the message's, as before v11."""
    if item.data is None:
        return ReceiptOutcome("unknown", 0, 0, False)
    if record_ack(t, item.message_id, item.data, at):
        env = t.envelopes[item.message_id]
        if env.completed_at is None:
            env.completed_at = at
        return ReceiptOutcome("recorded", 1, 1, True)
    return ReceiptOutcome("duplicate", 1, 1, False)


def record_receipt_rows(
    t: Tables,
    items: Sequence[ReceiptRecord],
    at: datetime,
    *,
    legacy: bool = False,
    relayed: bool = False,
) -> list[ReceiptOutcome]:
    """Record each receipt for its destination row, once (the first one stands); see
    destinations.record_receipt_rows for ``legacy`` and ``relayed``."""
    out: list[ReceiptOutcome] = []
    for item in items:
        row = t.destinations.get((item.message_id, item.site))
        if row is not None and relayed and row.hop is None:
            row = None
        if row is None:
            if legacy and not t.has_rows(item.message_id) and item.message_id in t.envelopes:
                out.append(_legacy_receipt(t, item, at))
                continue
            delivered, total = counts(t, item.message_id)
            out.append(ReceiptOutcome("unknown", delivered, total, False))
            continue
        if row.receipt_at is not None:
            delivered, total = counts(t, item.message_id)
            out.append(ReceiptOutcome("duplicate", delivered, total, False))
            continue
        was = row.outcome
        reason = LATE_RECEIPT_REASON if was == "failed" else item.reason
        digest = opt_bytes(item.receipt_digest) or None
        row.outcome, row.reason, row.receipt_digest = "delivered", reason, digest
        row.receipt_for, row.receipt_at = opt_bytes(item.receipt_for), at
        row.receipt, row.updated_at = opt_bytes(item.data), at
        told = f"{reason} sha256:{digest.hex()[:16]}" if digest else reason
        add_history(t, item.message_id, item.site, OutState.DELIVERED.value, told, at)
        if row.hop is not None:
            _hop_done(t, item.message_id, row.hop, at)
        completed = was == "open" and maybe_complete(t, item.message_id, at)
        delivered, total = counts(t, item.message_id)
        out.append(ReceiptOutcome("recorded", delivered, total, completed))
    return out


def close_open(
    t: Tables,
    message_id: str,
    *,
    hops: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    reason: str,
    at: datetime,
) -> Closed:
    """Fail the message's open rows (only those through ``hops``, and only those of
    ``sites``, when given) but a row waiting for its kept receipt's re-check; history
    per row; complete the message if none is left open."""
    closed = []
    for site, row in t.rows_of(message_id):
        if row.outcome != "open" or row.reason == RECHECK_REASON:
            continue
        if hops is not None and (row.hop is None or row.hop not in hops):
            continue
        if sites is not None and site not in sites:
            continue
        row.outcome, row.reason, row.updated_at = "failed", reason, at
        closed.append(site)
    for site in closed:
        add_history(t, message_id, site, OutState.FAILED.value, reason, at)
    completed = bool(closed) and maybe_complete(t, message_id, at)
    return Closed(message_id, tuple(closed), reason, completed)


def reopen_failed(
    t: Tables, message_id: str, hops: Sequence[str], reason: str, at: datetime
) -> list[str]:
    """Reopen the failed rows routed through ``hops``; the message is no longer complete."""
    if not hops:
        return []
    sites = []
    for site, row in t.rows_of(message_id):
        if row.outcome == "failed" and row.hop is not None and row.hop in hops:
            row.outcome, row.reason, row.updated_at = "open", "", at
            sites.append(site)
    for site in sites:
        add_history(t, message_id, site, OutState.QUEUED.value, reason, at)
    env = t.envelopes.get(message_id)
    if sites and env is not None:
        env.completed_at = None
    return sites


def requeue(
    t: Tables, message_id: str, *, from_states: Sequence[str], reason: str, at: datetime
) -> int:
    """Move the message's deliveries in ``from_states`` back to queued (due now); a
    failed one reopens the failed destinations routed through it."""
    failed: list[str] = []
    if OutState.FAILED.value in [str(s) for s in from_states]:
        failed = [p for p, d in t.deliveries_of(message_id) if d.state == OutState.FAILED.value]
    moved = set_state(
        t,
        message_id,
        to=OutState.QUEUED.value,
        from_states=from_states,
        reason=reason,
        at=at,
        next_attempt=at,
    )
    reopen_failed(t, message_id, failed, reason, at)
    return moved


def receipted(t: Tables, message_id: str) -> dict[str, bytes]:
    """site -> receipt digest of the rows with a receipt (b"": digest not known)."""
    return {
        site: bytes(row.receipt_digest or b"")
        for site, row in t.rows_of(message_id)
        if row.receipt_at is not None
    }


def _kept(t: Tables, waiting: set[tuple[str, str]]) -> list[KeptReceipt]:
    """The kept receipts attributed to ``waiting`` rows as migrate_v11 attributes them."""
    if not waiting:
        return []
    found = []
    for mid in sorted(t.envelopes):
        env = t.envelopes[mid]
        item = t.inbound.get(mid)
        if env.doc_class != "receipt" or env.received_from is None:
            continue
        if item is None or item.state != InState.ACKED.value:
            continue
        acked = [h for h in t.history if h.message_id == mid and h.peer is None]
        acked = [h for h in acked if h.state == InState.ACKED.value]
        if not acked or acked[-1].reason != RECEIPT_REASON:
            continue
        row = (mid, env.origin, env.digest, env.data, acked[-1].at)
        kept = attribute(row, waiting)
        if kept is not None:
            found.append(kept)
    return [KeptReceipt(k.answers, k.site, k.receipt_id, k.at) for k in in_order(found)]


class MemoryDestinations(MemoryTables):
    """The per-destination methods of the Store protocol."""

    async def destinations(self, message_id: str) -> list[Destination]:
        def q(t: Tables) -> list[Destination]:
            out = []
            for site, row in t.rows_of(message_id):
                d = hop_row(t, message_id, row)
                is_open = row.outcome == "open"
                updated = row.updated_at
                if is_open and d is not None and d.updated_at > row.updated_at:
                    updated = d.updated_at
                out.append(
                    Destination(
                        message_id=message_id,
                        site=site,
                        hop=row.hop,
                        state=dest_state(row, d),
                        reason=dest_reason(row, d),
                        attempts=0 if d is None else d.attempts,
                        next_attempt=d.next_attempt if is_open and d is not None else None,
                        updated=updated,
                        receipt_at=row.receipt_at,
                        receipt_digest=row.receipt_digest,
                        receipt_for=row.receipt_for,
                        receipt_size=len(row.receipt or b""),
                    )
                )
            return out

        return await self._read(q)

    async def destination_receipt(self, message_id: str, site: str) -> bytes | None:
        def q(t: Tables) -> bytes | None:
            row = t.destinations.get((message_id, site))
            return None if row is None else row.receipt

        return await self._read(q)

    async def record_receipts(
        self, items: Sequence[ReceiptRecord], *, now: datetime
    ) -> list[ReceiptOutcome]:
        batch = list(items)
        for item in batch:
            if not isinstance(item, ReceiptRecord):
                raise StoreError(f"not a ReceiptRecord: {item!r}")
        if not batch:
            return []
        at = utc(now)
        return await self._write(lambda t: record_receipt_rows(t, batch, at))

    async def destination_depths(self) -> dict[tuple[str, str], int]:
        def q(t: Tables) -> dict[tuple[str, str], int]:
            out: dict[tuple[str, str], int] = {}
            for (mid, site), row in t.destinations.items():
                key = (site if row.outcome == "open" else "", dest_state(row, hop_row(t, mid, row)))
                out[key] = out.get(key, 0) + 1
            return out

        return await self._read(q)

    async def kept_receipts_to_recheck(self) -> KeptReceipts:
        def q(t: Tables) -> KeptReceipts:
            rows = sorted(
                key
                for key, row in t.destinations.items()
                if row.outcome == "open" and row.reason == RECHECK_REASON
            )
            return KeptReceipts(tuple(rows), tuple(_kept(t, set(rows))))

        return await self._read(q)

    async def settle_kept_receipts(
        self,
        verified: Sequence[tuple[ReceiptRecord, datetime]],
        refused: Sequence[tuple[str, str]],
        unconfirmed: Sequence[tuple[str, str, str]],
        *,
        now: datetime,
    ) -> list[ReceiptOutcome]:
        at = utc(now)
        checked = [(r, utc(acked)) for r, acked in verified]

        def tx(t: Tables) -> list[ReceiptOutcome]:
            out = record_receipt_rows(t, [r for r, _ in checked], at)
            for (r, acked), o in zip(checked, out, strict=True):
                row = t.destinations.get((r.message_id, r.site))
                if o.status != "recorded" or row is None or row.receipt_digest is None:
                    continue
                if row.receipt_digest == bytes(r.receipt_digest):
                    row.receipt_at = acked
            for receipt_id, reason in refused:
                add_history(t, receipt_id, None, InState.ACKED.value, reason, at)
            for message_id, site, reason in unconfirmed:
                row = t.destinations.get((message_id, site))
                if row is not None and row.outcome == "open" and row.reason == RECHECK_REASON:
                    row.reason, row.updated_at = reason, at
            return out

        return await self._write(tx)
