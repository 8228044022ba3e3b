"""What the in-memory store's modules share: the call bodies that more than one call runs
(accepting, failing), as accept.py and outbound.py have them for the SQL backends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.store._common import UNDELIVERED, rank, second_relayed_receipt, unique_hops
from gateway.store.memory_destinations import (
    close_open,
    insert_routes,
    record_receipt_rows,
    relayed_receipt,
)
from gateway.store.memory_tables import (
    Delivery,
    Envelope,
    Inbound,
    Tables,
    add_history,
    opt_bytes,
    utc,
)
from gateway.store.records import (
    Acceptance,
    Closed,
    EnvelopeRecord,
    InState,
    OutState,
    StoreError,
)


def new_envelope(record: EnvelopeRecord, hop_ack: bytes | None, at: datetime) -> Envelope:
    """The row of a newly accepted envelope (copied in: nothing of the caller's is kept)."""
    return Envelope(
        message_id=str(record.message_id),
        origin=str(record.origin),
        destinations=tuple(str(d) for d in record.destinations),
        digest=bytes(record.digest),
        created=utc(record.created, "created"),
        expires=utc(record.expires, "expires"),
        priority=str(record.priority),
        received_from=None if record.received_from is None else str(record.received_from),
        data=bytes(record.data),
        hop_ack=opt_bytes(hop_ack),
        accepted_at=at,
        doc_class=str(record.doc_class),
        chain=opt_bytes(record.chain),
        escrow=opt_bytes(record.escrow),
    )


def accept_one(
    t: Tables,
    record: EnvelopeRecord,
    next_hops: Sequence[str],
    deliver_here: bool,
    hop_ack: bytes | None,
    at: datetime,
) -> Acceptance:
    """accept() of one envelope inside the caller's call (see Store.accept)."""
    order = rank(record.priority)  # an unknown priority is refused before anything
    mid = record.message_id
    if mid in t.tombstones:
        return Acceptance(new=False, hop_ack=None, deleted=True)
    if mid in t.envelopes:
        return Acceptance(new=False, hop_ack=t.envelopes[mid].hop_ack)
    env = new_envelope(record, hop_ack, at)
    t.envelopes[mid] = env
    relayed = None if deliver_here else relayed_receipt(record)
    if relayed is not None:
        # Recorded first: a second, different receipt from the destination is refused
        # here, neither stored nor queued (review 11b, F3).
        (done,) = record_receipt_rows(t, [relayed], at, relayed=True)
        if done.status == "duplicate":
            del t.envelopes[mid]
            first = t.destinations.get((relayed.message_id, relayed.site))
            held = None if first is None else first.receipt_digest
            why = second_relayed_receipt(relayed.site, relayed.message_id, held)
            return Acceptance(new=False, hop_ack=None, refused=why)
    for peer in unique_hops(str(p) for p in next_hops):
        t.deliveries[(mid, peer)] = Delivery(
            state=OutState.QUEUED.value, updated_at=at, rank=order, created=env.created
        )
        add_history(t, mid, peer, OutState.QUEUED.value, "", at)
    insert_routes(t, record, at)
    if deliver_here:
        t.inbound[mid] = Inbound(InState.RECEIVED.value, at, at)
        add_history(t, mid, None, InState.RECEIVED.value, "", at)
    return Acceptance(new=True, hop_ack=env.hop_ack)


def fail_undelivered(
    t: Tables,
    message_id: str,
    peer: str | None,
    reason: str,
    at: datetime,
    *,
    owner: str | None = None,
) -> Closed | None:
    """Fail the message's undelivered deliveries (to ``peer``, or all) and close its open
    destinations through ``peer`` (or all of them). None if nothing changed. Raises
    StoreError for an unknown message."""
    if message_id not in t.envelopes:
        raise StoreError(f"unknown message {message_id}")
    moved = []
    for p, d in t.deliveries_of(message_id):
        if d.state in UNDELIVERED and (peer is None or p == peer):
            if owner is not None and (d.state != OutState.SENDING.value or d.lease_owner != owner):
                continue
            d.state, d.lease_owner, d.lease_until = OutState.FAILED.value, None, None
            d.last_reason, d.updated_at = reason, at
            moved.append(p)
    if owner is not None and not moved:
        return None  # the try's answer came too late: the copy was replaced meanwhile
    for p in moved:
        add_history(t, message_id, p, OutState.FAILED.value, reason, at)
    closed = close_open(t, message_id, hops=None if peer is None else [peer], reason=reason, at=at)
    if not moved and not closed.sites:
        return None
    return closed
