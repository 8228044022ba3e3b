"""``valise doctor``'s look at the work still to do: deliveries deferred too long or
failed lately, messages sent from here still without a receipt, documents received
here and not delivered (a receipt deferred for want of the origin's key, above all),
deliveries held too long, and held mail whose escrow no key here opens any more
(gateway/service/doctor_escrow.py).

Reads the store (``Store.queue(todo=True)``, the inbound items still ``received``) and
whether each such document's inbox folder exists, and hands plain values to the pure
checks of gateway/service/doctor_checks.py. Thresholds: ``[relay] warn_deferred_seconds``, and
doctor_checks.FAILED_WINDOW for failures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from config.site import SiteConfig
from gateway.relay.waiting import waiting_reason
from gateway.service.doctor_checks import (
    Check,
    Waiting,
    deferred_check,
    failed_check,
    held_check,
    receipts_awaited_check,
    received_check,
)
from gateway.service.doctor_escrow import escrow_check
from gateway.store.base import InState, OutState, QueueEntry, Store
from routing.directory import Directory

# The most documents still ``received`` the doctor reads (oldest first); normally none.
RECEIVED_LIMIT = 10_000


def _since(q: QueueEntry, field: datetime | None) -> datetime:
    return field or q.created


async def queue_checks(
    store: Store, config: SiteConfig, directory: Directory | None, now: datetime
) -> list[Check]:
    threshold = timedelta(seconds=config.relay.warn_deferred_seconds)
    todo = await store.queue(todo=True)
    deferred = [
        Waiting(q.message_id, q.peer, _since(q, q.accepted), q.last_reason)
        for q in todo
        if q.state == OutState.DEFERRED.value
    ]
    failed = [
        Waiting(q.message_id, q.peer, _since(q, q.updated), q.last_reason)
        for q in todo
        if q.state == OutState.FAILED.value
    ]
    held = [
        Waiting(q.message_id, q.peer, _since(q, q.accepted), q.last_reason)
        for q in todo
        if q.state == OutState.HELD.value
    ]
    forwarded = []
    for q in todo:
        if q.state != OutState.FORWARDED.value:
            continue
        since = _since(q, q.updated)
        if not q.dest_total:
            forwarded.append(Waiting(q.message_id, q.peer, since, q.last_reason))
            continue
        # A circular (issue 11): each destination through this hop still awaiting its
        # receipt, not the message (whose other destinations may have theirs).
        forwarded += [
            Waiting(q.message_id, f"{d.site} via {q.peer}", since, q.last_reason)
            for d in await store.destinations(q.message_id)
            if d.hop == q.peer and d.state == OutState.FORWARDED.value
        ]
    inbox = config.directory / "inbox"
    received = [
        Waiting(
            item.message_id,
            item.origin,
            item.received,
            waiting_reason(
                item.origin,
                item.doc_class,
                directory,
                opened=(inbox / item.message_id).exists(),
            ),
        )
        for item in await store.inbox(state=InState.RECEIVED, limit=RECEIVED_LIMIT)
    ]
    return [
        deferred_check(deferred, now, threshold),
        held_check(held, now, threshold),
        await escrow_check(store, config, [w.message_id for w in held]),
        failed_check(failed, now),
        receipts_awaited_check(forwarded, now, threshold),
        received_check(received, now, threshold),
    ]
