"""Delivery state and receipts per final destination (issue 11), one implementation for
both backends over the store's driver (sql/queries/destinations.sql).

One ``destinations`` row per final destination of a message, at the origin and at a hub
that relays it (sql/<backend>/v11_destinations.sql). A row stores only its terminal fact
(``outcome``: open, delivered with its receipt, failed with its reason); the state it
shows is derived from its hop row when read (the ``_state`` fragment). Every change to a
destination row appends a history row whose peer is the destination site. Closing rows
and completing a message happen under the message's envelope row lock (rows.py).

The helpers take the Conn of a transaction the caller opened; the mixin's methods are
the per-destination part of the Store protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.store._common import (
    LATE_RECEIPT_REASON,
    RECEIPT_REASON,
    RECHECK_REASON,
    RELAYED_RECEIPT_REASON,
    aware,
)
from gateway.store.driver import Conn, OnDriver, Row, opt_when, sql, when
from gateway.store.records import (
    Closed,
    Destination,
    EnvelopeRecord,
    OutState,
    ReceiptOutcome,
    ReceiptRecord,
    StoreError,
)
from gateway.store.rows import add_histories, add_history, exists, lock_messages, set_state

_NOT_DELIVERED = [s.value for s in OutState if s != OutState.DELIVERED]


@dataclass
class _Dest:
    """A destination row as record_receipt_rows keeps it while taking a batch."""

    outcome: str
    hop: str | None
    taken: bool  # its receipt recorded (before, or by an earlier item of the batch)


def _blob(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


async def has_rows(c: Conn, message_id: str) -> bool:
    q = sql(c, "destinations")
    return await c.fetchrow(q.has_rows, message_id=message_id) is not None


def route_rows(records: Sequence[EnvelopeRecord]) -> list[tuple[str, str, str | None]]:
    """(message id, destination, hop) of each record's routes, the first route of a site
    winning."""
    out: list[tuple[str, str, str | None]] = []
    for record in records:
        routes: dict[str, str | None] = {}
        for site, hop in record.routes:
            routes.setdefault(site, hop)
        out += [(record.message_id, site, hop) for site, hop in routes.items()]
    return out


async def insert_routes(c: Conn, records: Sequence[EnvelopeRecord], at: datetime) -> None:
    """One open row per destination of each (new) record's routes."""
    rows = [{"message_id": m, "site": s, "hop": h, "at": at} for m, s, h in route_rows(records)]
    await c.executemany(sql(c, "destinations").insert_route, rows)


def relayed_receipt(record: EnvelopeRecord) -> ReceiptRecord | None:
    """What a hub records for a receipt envelope it takes to relay (None: not one)."""
    if record.received_from is None or record.doc_class != "receipt" or not record.answers:
        return None
    return ReceiptRecord(
        record.answers, record.origin, record.digest, None, None, RELAYED_RECEIPT_REASON
    )


async def maybe_complete(c: Conn, message_id: str, at: datetime) -> bool:
    """Set ``completed_at`` if the message has rows, none open, and it is not set yet;
    True only for the call that set it (the caller holds the envelope's lock)."""
    q = sql(c, "destinations")
    return await c.execute(q.maybe_complete, message_id=message_id, at=at) == 1


async def _hops_done(c: Conn, message_id: str, hops: Sequence[str], at: datetime) -> None:
    """Mark these hop rows delivered (no destination through them lacks a receipt)."""
    await set_state(
        c,
        message_id,
        to=OutState.DELIVERED.value,
        from_states=_NOT_DELIVERED,
        reason=RECEIPT_REASON,
        at=at,
        peers=hops,
    )


async def record_ack(c: Conn, message_id: str, proof: bytes, at: datetime) -> bool:
    """Store the proof of delivery of a message without destination rows (a receipt
    envelope sealed here: its next hop's signed acknowledgement) in envelopes.receipt and
    mark every hop row of it delivered; False if one was recorded already, if the
    message has destination rows (their receipts are per destination), or if it is not
    stored here (deleted meanwhile: nothing to record)."""
    if await has_rows(c, message_id):
        return False
    q = sql(c, "destinations")
    if not await c.execute(q.store_ack, message_id=message_id, proof=proof):
        return False
    moved = await set_state(
        c,
        message_id,
        to=OutState.DELIVERED.value,
        from_states=_NOT_DELIVERED,
        reason=RECEIPT_REASON,
        at=at,
    )
    if not moved:
        await add_history(c, message_id, None, OutState.DELIVERED.value, RECEIPT_REASON, at)
    return True


async def _legacy_receipt(c: Conn, item: ReceiptRecord, at: datetime) -> ReceiptOutcome:
    """A message without destination rows (accepted without routes): the receipt is the
    message's, as before v11 (envelopes.receipt, every hop row delivered)."""
    if item.data is None:
        return ReceiptOutcome("unknown", 0, 0, False)
    if await record_ack(c, item.message_id, item.data, at):
        await c.execute(sql(c, "destinations").complete, message_id=item.message_id, at=at)
        return ReceiptOutcome("recorded", 1, 1, True)
    return ReceiptOutcome("duplicate", 1, 1, False)


async def record_receipt_rows(
    c: Conn,
    items: Sequence[ReceiptRecord],
    at: datetime,
    *,
    legacy: bool = False,
    relayed: bool = False,
) -> list[ReceiptOutcome]:
    """Record each receipt for its destination row, once (the first one stands, also
    within the batch: the items are taken in order).

    ``legacy``: a message that exists without any destination row takes the receipt as
    before v11 (see _legacy_receipt); otherwise it is ``unknown``. ``relayed``: a receipt
    passing through here on its way to the origin, which closes only a row forwarded
    on (a row delivered here, hop None, is this site's own to close: ``unknown``).
    """
    q = sql(c, "destinations")
    known = await lock_messages(c, (i.message_id for i in items))
    # One read of the batch's rows, kept up to date here as receipts are taken (the items
    # in order: the first receipt for a row stands), then the writes in a few statements
    # per batch: a round trip per statement counts on PostgreSQL (review of issue 13's
    # bench: eight per receipt made relay.e2e.4k.pg 15 % slower).
    ids = sorted({i.message_id for i in items if i.message_id in known})
    rows: dict[tuple[str, str], _Dest] = {}
    if ids:
        for r in await c.fetch(q.rows_of, ids=ids):
            rows[(r[0], r[1])] = _Dest(str(r[2]), r[3], r[4] is not None)
    counts: dict[str, list[int]] = {m: [0, 0] for m in ids}
    for (m, _), dest in rows.items():
        counts[m][0] += dest.outcome == "delivered"
        counts[m][1] += 1
    out: list[ReceiptOutcome] = []
    takes: list[dict[str, object]] = []
    histories: list[dict[str, object]] = []
    hops: dict[str, set[str]] = {}  # message -> hops a receipt was taken through
    closing: dict[str, int] = {}  # message -> index in out of its last take of an open row
    for item in items:
        if item.message_id not in known:
            out.append(ReceiptOutcome("unknown", 0, 0, False))
            continue
        row = rows.get((item.message_id, item.site))
        if row is not None and relayed and row.hop is None:
            row = None
        delivered, total = counts[item.message_id]
        if row is None:
            if legacy and total == 0:
                out.append(await _legacy_receipt(c, item, at))
                continue
            out.append(ReceiptOutcome("unknown", delivered, total, False))
            continue
        if row.taken:
            out.append(ReceiptOutcome("duplicate", delivered, total, False))
            continue
        outcome, hop = row.outcome, row.hop
        reason = LATE_RECEIPT_REASON if outcome == "failed" else item.reason
        digest = _blob(item.receipt_digest) or None
        takes.append(
            {
                "message_id": item.message_id,
                "site": item.site,
                "reason": reason,
                "digest": digest,
                "receipt_for": _blob(item.receipt_for),
                "receipt": _blob(item.data),
                "at": at,
            }
        )
        told = f"{reason} sha256:{digest.hex()[:16]}" if digest else reason
        histories.append(
            {
                "message_id": item.message_id,
                "peer": item.site,
                "state": OutState.DELIVERED.value,
                "reason": told,
                "at": at,
            }
        )
        row.taken, row.outcome = True, "delivered"
        if outcome != "delivered":
            counts[item.message_id][0] += 1
        if hop is not None:
            hops.setdefault(item.message_id, set()).add(hop)
        if outcome == "open":
            closing[item.message_id] = len(out)
        delivered, total = counts[item.message_id]
        out.append(ReceiptOutcome("recorded", delivered, total, False))
    if not takes:
        return out
    await c.executemany(q.take_receipt, takes)
    await c.executemany(sql(c, "rows").add_history, histories)
    if hops:
        left = {(r[0], r[1]) for r in await c.fetch(q.hops_left, ids=sorted(hops))}
        for message_id in sorted(hops):
            done = sorted(h for h in hops[message_id] if (message_id, h) not in left)
            if done:
                await _hops_done(c, message_id, done, at)
    for message_id, index in closing.items():
        if await maybe_complete(c, message_id, at):
            out[index] = replace(out[index], completed=True)
    return out


async def close_open(
    c: Conn,
    message_id: str,
    *,
    hops: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    reason: str,
    at: datetime,
) -> Closed:
    """Fail the message's open rows (only those through ``hops``, and only those of
    ``sites``, when given) but a row waiting for its kept receipt's re-check
    (RECHECK_REASON); history per row; complete the message if none is left open."""
    await lock_messages(c, [message_id])
    rows = await c.fetch(
        sql(c, "destinations").close_open,
        message_id=message_id,
        reason=reason,
        at=at,
        recheck=RECHECK_REASON,
        all_hops=hops is None,
        hops=list(hops or ()),
        all_sites=sites is None,
        sites=list(sites or ()),
    )
    closed = sorted(r[0] for r in rows)
    await add_histories(c, message_id, closed, OutState.FAILED.value, reason, at)
    completed = bool(closed) and await maybe_complete(c, message_id, at)
    return Closed(message_id, tuple(closed), reason, completed)


async def reopen_failed(
    c: Conn, message_id: str, hops: Sequence[str], reason: str, at: datetime
) -> list[str]:
    """Reopen the failed rows routed through ``hops`` (their hop rows were requeued);
    the message is no longer complete."""
    if not hops:
        return []
    q = sql(c, "destinations")
    await lock_messages(c, [message_id])
    rows = await c.fetch(q.reopen_failed, message_id=message_id, hops=list(hops), at=at)
    sites = sorted(r[0] for r in rows)
    await add_histories(c, message_id, sites, OutState.QUEUED.value, reason, at)
    if sites:
        await c.execute(q.uncomplete, message_id=message_id)
    return sites


async def requeue(
    c: Conn, message_id: str, *, from_states: Sequence[str], reason: str, at: datetime
) -> int:
    """Move the message's deliveries in ``from_states`` back to queued (due now); a
    failed one reopens the failed destinations routed through it."""
    await lock_messages(c, [message_id])
    failed: list[str] = []
    if OutState.FAILED.value in [str(s) for s in from_states]:
        q = sql(c, "destinations")
        failed = [r[0] for r in await c.fetch(q.failed_peers, message_id=message_id)]
    moved = await set_state(
        c,
        message_id,
        to=OutState.QUEUED.value,
        from_states=from_states,
        reason=reason,
        at=at,
        next_attempt=at,
    )
    await reopen_failed(c, message_id, failed, reason, at)
    return moved


async def receipted(c: Conn, message_ids: Sequence[str]) -> dict[str, dict[str, bytes]]:
    """message id -> (site -> receipt digest) of the rows with a receipt (b"": digest
    not known, recorded before v11)."""
    rows = await c.fetch(sql(c, "destinations").receipted, ids=list(message_ids))
    out: dict[str, dict[str, bytes]] = {}
    for r in rows:
        out.setdefault(r[0], {})[r[1]] = bytes(r[2] or b"")
    return out


def _destination(r: Row) -> Destination:
    return Destination(
        message_id=r["message_id"],
        site=r["site"],
        hop=r["hop"],
        state=r["state"],
        reason=r["reason"] or "",
        attempts=int(r["attempts"]),
        next_attempt=opt_when(r["next_attempt"]),
        updated=when(r["updated"]),
        receipt_at=opt_when(r["receipt_at"]),
        receipt_digest=_blob(r["receipt_digest"]),
        receipt_for=_blob(r["receipt_for"]),
        receipt_size=int(r["receipt_size"]),
    )


class Destinations(OnDriver):
    """The per-destination methods of the Store protocol."""

    async def destinations(self, message_id: str) -> list[Destination]:
        q = self._sql("destinations")

        async def read(c: Conn) -> list[Destination]:
            return [_destination(r) for r in await c.fetch(q.destinations, message_id=message_id)]

        return await self._db.read(read)

    async def destination_receipt(self, message_id: str, site: str) -> bytes | None:
        q = self._sql("destinations")

        async def read(c: Conn) -> bytes | None:
            return _blob(await c.fetchval(q.destination_receipt, message_id=message_id, site=site))

        return await self._db.read(read)

    async def record_receipts(
        self, items: Sequence[ReceiptRecord], *, now: datetime
    ) -> list[ReceiptOutcome]:
        batch = list(items)
        for item in batch:
            if not isinstance(item, ReceiptRecord):
                raise StoreError(f"not a ReceiptRecord: {item!r}")
        if not batch:
            return []
        at = aware(now)

        async def tx(c: Conn) -> list[ReceiptOutcome]:
            return await record_receipt_rows(c, batch, at)

        return await self._db.transaction(tx)

    async def destination_depths(self) -> dict[tuple[str, str], int]:
        q = self._sql("destinations")

        async def read(c: Conn) -> dict[tuple[str, str], int]:
            return {(r[0], r[1]): int(r[2]) for r in await c.fetch(q.depths)}

        return await self._db.read(read)


__all__ = ["Destinations", "close_open", "exists", "has_rows", "insert_routes", "lock_messages"]
__all__ += ["maybe_complete", "receipted", "record_ack", "record_receipt_rows", "relayed_receipt"]
__all__ += ["reopen_failed", "requeue"]
