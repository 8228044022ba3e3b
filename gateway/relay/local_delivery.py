"""Local delivery at the destination (and receipts at the origin), a batch at a time.

Rules:
- A batch is the oldest items still ``received`` (at most ``BATCH_ENVELOPES``, about
  ``BATCH_BYTES``). Each is opened (its head parsed once, or not at all when the hop
  handler left it in the HeadCache) with the origin's key from the directory, its
  parts written under DIR/inbox/ID/ atomically, and a signed receipt sealed back to
  the origin. Then each document is handed on (``[delivery] mode``).
- A small envelope is opened on the event loop, yielding between envelopes: a worker
  thread would only contend for the GIL (the work is Python and crypto calls that
  hold it), and every I/O event of the loop would then wait for the thread's switch
  interval. An envelope over ``INLINE_BYTES`` is opened in a worker thread, so that
  the loop is never blocked for long.
- Only then, in ONE store transaction for the whole batch, are the receipts queued
  and the items marked available (or acked: receipts, undeliverable envelopes).
  Every step before that commit is idempotent (an inbox folder already there is
  kept), so a crash anywhere is finished by the next run, and each document is
  delivered exactly once.
- A receipt envelope arriving at the origin marks its destination delivered only if
  it verifies (gateway/relay/circular.py check_origin_receipt): signed by the site it names,
  a destination of the message, naming the digest of an envelope sent as it (the
  stored copy's, or one of a copy it replaced: re-sealed or re-signed here after that
  copy may already have been delivered, gateway/relay/reseal.py), and the first receipt from
  that site (the same one again is a duplicate); the batch's receipts are recorded in
  the same single transaction. The message is delivered when every destination's
  receipt is in. A refused receipt is acked with the reason and changes nothing else.
- A receipt is sealed with an escrow of its content key, like any document sent
  from here: if the origin's key it is sealed to is revoked while it is on its way,
  it is re-sealed to the replacement (gateway/relay/reseal_sweeps.py reseal_revoked).
- An envelope that cannot be opened or delivered is failed and acked with the
  reason; one whose local hand-off failed for now (a Retry: DeliveryDeferred) stays
  ``received`` and is retried with backoff.
- A document whose receipt cannot be sealed yet (its origin has no usable encryption
  key in our directory: revoked, the replacement not yet published) stays
  ``received``, acked by no one, and is not written to the inbox; it is opened again
  as soon as the directory changes (or after backoff), and then delivered with its
  receipt in one transaction as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.relay.circular import ReceiptRefused, check_origin_receipt
from gateway.relay.circular_status import emit_completed
from gateway.relay.handoff import HandOff
from gateway.relay.hop import HeadCache
from gateway.relay.opening import Opened, open_one
from gateway.runtime import logjson
from gateway.runtime.backoff import jittered
from gateway.runtime.errors import Retry
from gateway.runtime.events import Event, EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext
from gateway.store.base import (
    EnvelopeRecord,
    InboundOutcome,
    InState,
    ReceiptRecord,
    Settled,
)

log = logging.getLogger("valise.delivery")
BATCH_ENVELOPES = 64
BATCH_BYTES = 16 * 1024 * 1024
IDLE_POLL_SECONDS = 0.5
STORE_RETRY_SECONDS = 1.0
INLINE_BYTES = 256 * 1024


def _undeliverable(message_id: str, exc: Exception, here: str) -> InboundOutcome:
    """Ack an item that cannot be delivered here, and fail this site's own destination
    of its message (only that one: a hub's forwards to other destinations go on)."""
    logjson.event(
        log,
        logging.ERROR,
        "delivery_error",
        id=message_id,
        reason=f"{type(exc).__name__}: {exc}",
    )
    return InboundOutcome(
        message_id,
        InState.ACKED,
        reason=f"undeliverable: {exc}",
        failed=str(exc),
        failed_site=here,
    )


def _refused_receipt(o: Opened, exc: ReceiptRefused) -> InboundOutcome:
    """Ack a receipt envelope that does not fit the message it answers, with the
    reason; nothing else changes."""
    logjson.event(
        log,
        logging.WARNING,
        "receipt_refused",
        id=o.record.message_id,
        origin=o.record.origin,
        reason=str(exc),
    )
    return InboundOutcome(o.record.message_id, InState.ACKED, reason=f"receipt refused: {exc}")


class LocalDelivery:
    """The loop that opens what arrived for this site, a batch at a time."""

    def __init__(
        self,
        ctx: SiteContext,
        *,
        poke: Callable[[Iterable[str]], None],
        inbound: asyncio.Event,
        metrics: Metrics,
        events: EventBus,
        crash: Callable[[str], None],
        hand_off: HandOff,
    ) -> None:
        self.ctx = ctx
        self.hand_off = hand_off
        self.poke = poke
        self.inbound = inbound
        self.metrics = metrics
        self.events = events
        self.crash = crash
        self.retry_at: dict[str, datetime] = {}
        self.failures: dict[str, int] = {}
        # Documents whose receipt waits for a key of their origin: the directory serial
        # they last waited at. They are due again at once when the serial changes.
        self.awaiting: dict[str, int] = {}
        self.heads = HeadCache()

    async def loop(self) -> None:
        while True:
            # Cleared before looking, so that an arrival during the batch is not lost.
            self.inbound.clear()
            try:
                worked = await self.once()
            except Exception as exc:  # the store down, say: the loop must go on
                reason = f"{type(exc).__name__}: {exc}"
                logjson.event(log, logging.ERROR, "delivery_batch_error", reason=reason)
                await asyncio.sleep(STORE_RETRY_SECONDS)
                continue
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.inbound.wait(), timeout=IDLE_POLL_SECONDS)

    async def once(self) -> bool:
        """Deliver one batch; False if there was nothing (due) to deliver."""
        records = await self.ctx.store.inbound_received(
            limit=BATCH_ENVELOPES, max_bytes=BATCH_BYTES
        )
        now = datetime.now(UTC)
        serial = self.ctx.directory.serial
        due = [
            r
            for r in records
            if self.awaiting.get(r.message_id, serial) != serial
            or self.retry_at.get(r.message_id, now) <= now
        ]
        if not due:
            return False
        await self.deliver(due, now)
        return True

    async def deliver(self, records: Sequence[EnvelopeRecord], now: datetime) -> None:
        ctx = self.ctx
        directory = ctx.directory
        held = ctx.keys  # to adopt what the batch loaded only if nothing newer came since
        opened: list[Opened] = []
        for record in records:
            head = self.heads.take(record)
            if len(record.data) > INLINE_BYTES:
                opened.append(await asyncio.to_thread(open_one, ctx, directory, record, head, now))
            else:
                opened.append(open_one(ctx, directory, record, head, now))
                await asyncio.sleep(0)  # let the loop serve what came in meanwhile
        loaded = [o.loaded_keys for o in opened if o.loaded_keys is not None]
        if loaded and ctx.keys is held:
            # The batch loaded a newer ring from disk (a key rotated in). Adopted only if
            # nobody else adopted keys while it ran: the key watcher may have adopted a
            # ring newer than this one meanwhile (a revocation), and it would not look
            # again (the ring unchanged since it did).
            ctx.adopt_keys(loaded[-1])
        if any(o.reply is not None for o in opened):
            self.crash("deliver-after-inbox")
        outcomes: list[InboundOutcome] = []
        documents: list[Opened] = []
        receipts: list[Opened] = []
        for o in opened:
            mid = o.record.message_id
            if o.error is not None:
                outcomes.append(_undeliverable(mid, o.error, ctx.here))
            elif o.waiting is not None:
                self.await_key(o, directory.serial)
            elif o.receipt is not None:
                receipts.append(o)
            elif await self._hand_on(o, outcomes):
                documents.append(o)
                outcomes.append(
                    InboundOutcome(
                        mid,
                        InState.AVAILABLE,
                        "opened",
                        receipt=o.reply,
                        own_receipt=self._own_receipt(o),
                    )
                )
        verified = await self._check_receipts(receipts, outcomes)
        if verified:
            self.crash("receipt-before-mark")
        if not outcomes:
            return
        settled = await ctx.store.inbound_settle(outcomes, now=datetime.now(UTC))
        if documents:
            self.crash("deliver-after-receipt")
            # The receipts are queued: start their couriers.
            self.poke({hop for o in documents if o.reply is not None for hop in o.reply[1]})
        results = dict(zip((o.message_id for o in outcomes), settled, strict=True))
        await self._report(documents, verified, results, now)

    async def _hand_on(self, o: Opened, outcomes: list[InboundOutcome]) -> bool:
        """Hand the document on by its mailbox's mode; False if it is not delivered."""
        mid = o.record.message_id
        assert o.sealed is not None and o.folder is not None
        try:
            await self.hand_off(self.ctx, mid, o.sealed, o.folder)
        except Retry as exc:
            relay = self.ctx.config.relay
            n = self.failures.get(mid, 0) + 1
            self.failures[mid] = n
            delay = jittered(relay.retry_base_seconds, n, relay.retry_max_seconds)
            self.retry_at[mid] = datetime.now(UTC) + timedelta(seconds=delay)
            logjson.event(
                log,
                logging.WARNING,
                "local_delivery_deferred",
                id=mid,
                reason=str(exc),
                retry_in_s=round(delay, 2),
            )
            return False
        except Exception as exc:
            outcomes.append(_undeliverable(mid, exc, self.ctx.here))
            return False
        self.retry_at.pop(mid, None)
        self.failures.pop(mid, None)
        self.awaiting.pop(mid, None)
        return True

    def await_key(self, o: Opened, serial: int) -> None:
        """Leave a document whose receipt cannot be sealed yet ``received`` (not acked
        by anyone): it is tried again when the directory changes, or after backoff."""
        mid = o.record.message_id
        relay = self.ctx.config.relay
        n = self.failures.get(mid, 0) + 1
        self.failures[mid] = n
        delay = jittered(relay.retry_base_seconds, n, relay.retry_max_seconds)
        self.retry_at[mid] = datetime.now(UTC) + timedelta(seconds=delay)
        first = mid not in self.awaiting
        self.awaiting[mid] = serial
        logjson.event(
            log,
            logging.WARNING if first else logging.INFO,
            "receipt_deferred",
            id=mid,
            origin=o.record.origin,
            reason=f"receipt deferred: {o.waiting}; the document waits for a key to seal it to",
            directory_serial=serial,
            retry_in_s=round(delay, 2),
        )

    def _own_receipt(self, o: Opened) -> ReceiptRecord | None:
        """The record that closes this site's own destination row of document ``o``
        where there is one: at a hub that also relays the message, the receipt sealed
        here for it; at the origin, when it listed itself among the destinations, the
        opening here (no receipt envelope is sealed to oneself; the row's digest is
        then the document's own). Review 11, F2: the origin's own row stayed queued,
        the circular never completed and expiry failed a document in the inbox."""
        if o.routing is None:
            return None
        if o.routing.origin == self.ctx.here:
            return ReceiptRecord(
                o.record.message_id,
                self.ctx.here,
                o.record.digest,
                o.record.digest,
                None,
                "opened here (the origin)",
            )
        if o.reply is None:
            return None
        reply = o.reply[0]
        return ReceiptRecord(
            o.record.message_id,
            self.ctx.here,
            reply.digest,
            o.record.digest,
            None,
            "delivered here",
        )

    async def _check_receipts(
        self, receipts: list[Opened], outcomes: list[InboundOutcome]
    ) -> list[Opened]:
        """Verify receipts against the messages sent from here (gateway/relay/circular.py
        check_origin_receipt); queue their outcomes. A refused one is acked with the
        reason and changes nothing else."""
        if not receipts:
            return []
        # SentMessage.digests: the stored copy's and those it replaced (superseded).
        sent = await self.ctx.store.sent_digests(
            [o.receipt.message_id for o in receipts if o.receipt is not None]
        )
        verified: list[Opened] = []
        for o in receipts:
            receipt = o.receipt
            assert receipt is not None
            original = sent.get(receipt.message_id)
            try:
                check_origin_receipt(
                    receipt,
                    signer=o.record.origin,
                    receipt_digest=o.record.digest,
                    sent=original,
                    answers=o.routing.in_reply_to if o.routing is not None else None,
                )
            except ReceiptRefused as exc:
                outcomes.append(_refused_receipt(o, exc))
                continue
            assert original is not None
            # A second, different receipt from the same site in this batch is refused
            # like one recorded before it.
            sent[receipt.message_id] = replace(
                original, receipted={receipt.site: o.record.digest, **original.receipted}
            )
            verified.append(o)
            outcomes.append(
                InboundOutcome(
                    o.record.message_id,
                    InState.ACKED,
                    "receipt",
                    delivered=ReceiptRecord(
                        receipt.message_id,
                        receipt.site,
                        o.record.digest,
                        receipt.envelope_digest,
                        o.record.data,
                    ),
                )
            )
        return verified

    async def _report(
        self,
        documents: list[Opened],
        verified: list[Opened],
        results: dict[str, Settled],
        now: datetime,
    ) -> None:
        rows: list[dict[str, str]] = []
        for o in documents:
            done = results.get(o.record.message_id)
            if done is None or not done.applied:
                continue
            assert o.routing is not None and o.reply is not None
            self.metrics.delivered.inc()
            await self.events.emit(
                Event("received", o.record.message_id, now, {"origin": o.routing.origin})
            )
            rows.append(
                {
                    "id": o.record.message_id,
                    "origin": o.routing.origin,
                    "receipt": o.reply[0].message_id,
                }
            )
        logjson.each(log, logging.INFO, "delivered_here", rows)
        rows = []
        for o in verified:
            done = results.get(o.record.message_id)
            receipt = o.receipt
            if done is None or receipt is None or done.receipt is None:
                continue
            outcome = done.receipt
            if outcome.status != "recorded":
                continue
            self.metrics.receipts.inc()
            self.metrics.destination_receipts.labels(receipt.site, "verified").inc()
            m = receipt.message_id
            await self.events.emit(
                Event(
                    "delivered",
                    m,
                    now,
                    {
                        "site": receipt.site,
                        "receipt_sha256": o.record.digest.hex(),
                        "delivered": str(outcome.delivered),
                        "of": str(outcome.total),
                    },
                )
            )
            rows.append(
                {
                    "id": m,
                    "by": receipt.site,
                    "receipts": f"{outcome.delivered} of {outcome.total}",
                }
            )
            if outcome.completed:
                await emit_completed(self.events, self.ctx.store, m, now)
        logjson.each(log, logging.INFO, "delivered", rows)
        for settled in results.values():
            closed = settled.closed
            if closed is not None and closed.completed:
                await emit_completed(self.events, self.ctx.store, closed.message_id, now)
