"""A message's state across its destinations as this site's store holds it
(gateway/relay/circular.py summarise), for ``valise status`` and the other readers; and the
events of what a failure or an expiry closed.

Rules:
- The state is computed in one place, gateway/relay/circular.py summarise, from the
  message's destination rows; without rows (a receipt envelope, a document received
  here, a relay of mail stored before schema v11) from the latest state per next hop.
- A receipt recorded before schema v11 has no digest in its row: it is computed here
  from the receipt envelope's bytes.
- ``failed`` is emitted for what a failure closed (its destinations in ``sites``) and
  ``completed`` once, by the caller whose change closed the message's last open
  destination (the store tells it so, and no one else).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from envelope.errors import EnvelopeError
from envelope.open import parse_framed_head
from envelope.values import format_time
from gateway.relay.circular import DELETED, MessageStatus, summarise
from gateway.runtime.events import Event, EventBus
from gateway.store.base import Closed, Destination, Store


async def message_status(store: Store, message_id: str) -> MessageStatus | None:
    """The state of ``message_id`` here; None if this site knows nothing of it."""
    dests = await store.destinations(message_id)
    history = await store.history(message_id)
    if not dests and not history and await store.get_envelope(message_id) is None:
        return None
    hops: dict[str, str] = {}
    for t in history:
        if t.peer is not None:
            hops[t.peer] = t.state
    filled = [await _with_digest(store, d) for d in dests]
    deleted = bool(history) and history[-1].state == DELETED
    return summarise(filled, message_id=message_id, hops=hops, deleted=deleted)


async def _with_digest(store: Store, d: Destination) -> Destination:
    if d.receipt_at is None or d.receipt_digest is not None:
        return d
    data = await store.destination_receipt(d.message_id, d.site)
    if data is None:
        return d
    try:
        return replace(d, receipt_digest=parse_framed_head(data)[0].digest)
    except EnvelopeError:
        return d


def destination_json(d: Destination) -> dict[str, Any]:
    """One destination as ``valise status --json`` shows it."""
    receipt = None
    if d.receipt_at is not None:
        receipt = {
            "at": format_time(d.receipt_at),
            "sha256": d.receipt_digest.hex() if d.receipt_digest else None,
            "for": d.receipt_for.hex() if d.receipt_for else None,
            "size": d.receipt_size,
        }
    return {
        "site": d.site,
        "state": d.state,
        "via": d.hop,
        "reason": d.reason,
        "attempts": d.attempts,
        "next_attempt": format_time(d.next_attempt) if d.next_attempt else None,
        "receipt": receipt,
    }


def status_json(ms: MessageStatus) -> dict[str, Any]:
    """The per-destination part of ``valise status --json``: ``delivered`` (a bool:
    every destination's receipt is in), ``receipts`` k ``of`` n, the outstanding and
    failed sites, and one entry per destination."""
    return {
        "status": ms.status,
        "summary": ms.line(),
        "delivered": ms.status == "delivered",
        "receipts": ms.delivered,
        "of": ms.total,
        "outstanding": list(ms.outstanding),
        "failed": list(ms.failed),
        "destinations": [
            destination_json(d) for d in ms.destinations if isinstance(d, Destination)
        ],
    }


async def emit_closed(events: EventBus, store: Store, closed: Closed, now: datetime) -> None:
    """``failed`` for what a failure or an expiry closed, then ``completed`` if it
    closed the message's last open destination."""
    await events.emit(
        Event(
            "failed",
            closed.message_id,
            now,
            {"reason": closed.reason, "sites": ",".join(closed.sites)},
        )
    )
    if closed.completed:
        await emit_completed(events, store, closed.message_id, now)


async def emit_completed(events: EventBus, store: Store, message_id: str, now: datetime) -> None:
    """``completed`` for a message whose last open destination just closed, with its
    tally: ``delivered`` k ``of`` n and the ``failed`` sites."""
    dests = await store.destinations(message_id)
    failed = [d.site for d in dests if d.state == "failed"]
    delivered = sum(d.state == "delivered" for d in dests)
    await events.emit(
        Event(
            "completed",
            message_id,
            now,
            {"delivered": str(delivered), "of": str(len(dests)), "failed": ",".join(failed)},
        )
    )
