"""The first start after the v11 migration: the receipts the old gateway kept, re-checked.

v10 verified a receipt against the signed receipt document inside its envelope and
never compared that document with the envelope's plain ``in-reply-to``; the store, which
holds no key, cannot open it. So the v11 migration closes no destination from a kept
receipt's plain head: it leaves each row such a head answers open, waiting
(gateway/store/migrate_v11.py, RECHECK_REASON), and ``valise serve`` runs
``recheck_kept_receipts`` once the store is open, before it listens or starts any
worker (so before expiry: review 11c).

Rules:
- Each kept receipt chosen for a waiting row is opened as local delivery opens one
  (gateway/relay/local_delivery.py open_one: the signer's key from the directory in force,
  this site's decryption key) and put through the v11 check
  (gateway/relay/circular.py check_origin_receipt): its signed document names the message its
  plain head answers, the site that signed it, a destination of that message, and the
  digest of an envelope sent as it (the stored copy's or a superseded one's). Receipts
  go in the order the old gateway acknowledged them: the first one from a site stands,
  a later one is refused as a second receipt.
- A verified receipt closes its row as any receipt does (history ``delivered``, its hop
  delivered when none through it is left open, the message completed when none is
  open), with ``receipt_for`` the digest it names and ``receipt_at`` when the old
  gateway acknowledged it; ``delivered`` (and ``completed``) are emitted for it then.
  v10 emitted one message-level ``delivered`` for the first receipt only, whose row the
  migration closes without an event: nothing is emitted twice for a destination. A
  crash after the commit and before the events loses them (as for local delivery).
- A refused receipt, or one that cannot be opened, changes no row; its own history
  takes ``acked`` ``receipt refused at the v11 re-check: REASON``. A waiting row none of
  whose receipts verified stays open, its reason ``receipt kept before v11 not
  confirmed: REASON``; from then on expiry treats it as any open row.
- Everything is settled in one store transaction, so a start that dies before the
  commit re-checks everything at the next one; with no waiting row, this is one read.
- Only a store error raises (and stops the start); no receipt's content can.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gateway.relay.circular import ReceiptRefused, check_origin_receipt
from gateway.relay.circular_status import emit_completed
from gateway.relay.local_delivery import Opened, open_one
from gateway.runtime import logjson
from gateway.runtime.events import Event, EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext
from gateway.store.base import KeptReceipt, ReceiptOutcome, ReceiptRecord

log = logging.getLogger("valise.delivery")
REFUSED = "receipt refused at the v11 re-check: {}"
UNCONFIRMED = "receipt kept before v11 not confirmed: {}"
NOT_FOUND = "its receipt envelope is no longer kept here"


@dataclass(frozen=True)
class Rechecked:
    """What the re-check did: rows closed, rows left open (with why), receipts refused."""

    delivered: tuple[tuple[str, str], ...] = ()
    unconfirmed: tuple[tuple[str, str, str], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()


async def recheck_kept_receipts(
    ctx: SiteContext,
    events: EventBus,
    metrics: Metrics | None = None,
    *,
    now: datetime | None = None,
) -> Rechecked:
    """Re-check the kept receipts of the rows the v11 migration left waiting, and settle
    them (see the module rules). Raises StoreError."""
    now = now or datetime.now(UTC)
    waiting = await ctx.store.kept_receipts_to_recheck()
    if not waiting.rows:
        return Rechecked()
    why: dict[tuple[str, str], str] = {}
    refused: list[tuple[str, str]] = []
    opened: list[tuple[KeptReceipt, Opened]] = []
    for k in waiting.kept:
        o = await _open(ctx, k, now)
        if isinstance(o, str):
            why[(k.answers, k.site)] = o
            refused.append((k.receipt_id, REFUSED.format(o)))
        else:
            opened.append((k, o))
    verified = await _check(ctx, opened, why, refused)
    done = {(r.message_id, r.site) for r, _ in verified}
    unconfirmed = [
        (m, s, UNCONFIRMED.format(why.get((m, s), NOT_FOUND)))
        for m, s in waiting.rows
        if (m, s) not in done
    ]
    outcomes = await ctx.store.settle_kept_receipts(verified, refused, unconfirmed, now=now)
    for receipt_id, reason in refused:
        logjson.event(log, logging.WARNING, "kept_receipt_refused", id=receipt_id, reason=reason)
    for m, s, reason in unconfirmed:
        logjson.event(log, logging.WARNING, "kept_receipt_unconfirmed", id=m, site=s, reason=reason)
    closed = await _report(ctx, events, metrics, verified, outcomes, now)
    return Rechecked(tuple(closed), tuple(unconfirmed), tuple(refused))


async def _open(ctx: SiteContext, k: KeptReceipt, now: datetime) -> Opened | str:
    """The kept receipt opened, or why it cannot be."""
    record = await ctx.store.get_envelope(k.receipt_id)
    if record is None:
        return NOT_FOUND
    o = open_one(ctx, ctx.directory, record, None, now)
    if o.error is not None:
        return f"{type(o.error).__name__}: {o.error}"
    if o.receipt is None or o.routing is None:
        return "not a receipt"
    return o


async def _check(
    ctx: SiteContext,
    opened: list[tuple[KeptReceipt, Opened]],
    why: dict[tuple[str, str], str],
    refused: list[tuple[str, str]],
) -> list[tuple[ReceiptRecord, datetime]]:
    """The receipts that pass check_origin_receipt, in order, the first per site
    standing; the others' reasons go to ``why`` (by the row their head answers) and
    ``refused``."""
    sent = await ctx.store.sent_digests(
        sorted({o.receipt.message_id for _, o in opened if o.receipt is not None})
    )
    verified: list[tuple[ReceiptRecord, datetime]] = []
    for k, o in opened:
        receipt, routing = o.receipt, o.routing
        assert receipt is not None and routing is not None
        original = sent.get(receipt.message_id)
        try:
            check_origin_receipt(
                receipt,
                signer=o.record.origin,
                receipt_digest=o.record.digest,
                sent=original,
                answers=routing.in_reply_to,
            )
        except ReceiptRefused as exc:
            why.setdefault((k.answers, k.site), str(exc))
            refused.append((k.receipt_id, REFUSED.format(exc)))
            continue
        assert original is not None
        sent[receipt.message_id] = replace(
            original, receipted={receipt.site: o.record.digest, **original.receipted}
        )
        record = ReceiptRecord(
            receipt.message_id,
            receipt.site,
            o.record.digest,
            receipt.envelope_digest,
            o.record.data,
        )
        verified.append((record, k.acked_at))
    return verified


async def _report(
    ctx: SiteContext,
    events: EventBus,
    metrics: Metrics | None,
    verified: list[tuple[ReceiptRecord, datetime]],
    outcomes: list[ReceiptOutcome],
    now: datetime,
) -> list[tuple[str, str]]:
    """Emit ``delivered`` (and ``completed``) for each receipt recorded now."""
    closed: list[tuple[str, str]] = []
    for (r, _), outcome in zip(verified, outcomes, strict=True):
        if outcome.status != "recorded":
            continue
        closed.append((r.message_id, r.site))
        if metrics is not None:
            metrics.receipts.inc()
            metrics.destination_receipts.labels(r.site, "verified").inc()
        logjson.event(
            log,
            logging.INFO,
            "kept_receipt_confirmed",
            id=r.message_id,
            site=r.site,
            receipts=f"{outcome.delivered} of {outcome.total}",
        )
        await events.emit(
            Event(
                "delivered",
                r.message_id,
                now,
                {
                    "site": r.site,
                    "receipt_sha256": r.receipt_digest.hex(),
                    "delivered": str(outcome.delivered),
                    "of": str(outcome.total),
                },
            )
        )
        if outcome.completed:
            await emit_completed(events, ctx.store, r.message_id, now)
    return closed
