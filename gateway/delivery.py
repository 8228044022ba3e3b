"""The workers of a running site: couriers per peer, local delivery, receipts, expiry.

Rules:
- A courier claims a batch for one peer under a lease, posts it, and marks each
  envelope forwarded only after verifying that peer's signed hop acknowledgement.
  A failure defers the whole batch with exponential backoff and jitter, and the
  courier for that peer sleeps through the same delay (a per-peer circuit: a dead
  mission is tried once per backoff step, not once per message).
- Local delivery opens the envelope with the origin's key from the directory,
  writes the parts under DIR/inbox/ID/ atomically, queues a signed receipt
  envelope back to the origin, and only then marks the item available. Every step
  is idempotent, so a crash at any point is finished by the next run.
- A receipt envelope arriving at the origin marks the message delivered only if
  it verifies: signed by the destination, naming the message and its digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import ClientSession

from envelope.errors import EnvelopeError
from envelope.model import PartInfo, SealedHeader
from envelope.open import open_bytes, parse_framed_head
from envelope.receipt import (
    RECEIPT_CLASS,
    RECEIPT_MEDIA_TYPE,
    RECEIPT_NAME,
    Receipt,
    parse_receipt,
    write_receipt,
)
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.bridges.local import DeliveryDeferred, deliver_locally
from gateway.channel import PeerError, PinnedConnector, fetch_directory, post_batch
from gateway.events import Event, EventBus
from gateway.faults import crash_point
from gateway.hop import HopRefused, verify_ack
from gateway.metrics import Metrics
from gateway.site import SiteContext
from gateway.store.base import Claimed, EnvelopeRecord, InState
from gateway.tls import client_context
from routing.decision import Action, route
from routing.directory import DirectoryError

log = logging.getLogger("valise.delivery")


def jittered(base: float, attempts: int, cap: float) -> float:
    """Exponential backoff with full jitter (AWS style), at least base/2."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return max(base / 2, random.uniform(0, ceiling))  # noqa: S311 - jitter, not crypto


def record_for(data: bytes, received_from: str | None) -> EnvelopeRecord:
    parsed, _ = parse_framed_head(data)
    r = parsed.head.routing
    return EnvelopeRecord(
        message_id=r.message_id,
        origin=r.origin,
        destinations=r.destinations,
        digest=parsed.digest,
        created=r.created,
        expires=r.expires,
        priority=r.priority.value,
        received_from=received_from,
        data=data,
    )


async def submit(ctx: SiteContext, data: bytes, now: datetime) -> None:
    """Queue an envelope this site sealed (origin side)."""
    parsed, _ = parse_framed_head(data)
    decisions = route(parsed.head.routing, here=ctx.here, hub=ctx.directory.hub)
    next_hops = tuple(sorted({d.next_hop for d in decisions if d.next_hop}))
    here = any(d.action is Action.DELIVER for d in decisions)
    await ctx.store.accept(
        record_for(data, None), next_hops=next_hops, deliver_here=here, hop_ack=None, now=now
    )


class Workers:
    """All background loops of one running site."""

    def __init__(
        self,
        ctx: SiteContext,
        wake: asyncio.Event,
        inbound: asyncio.Event,
        metrics: Metrics,
        events: EventBus | None = None,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.events = events or EventBus()
        self.wake = wake
        self.inbound = inbound
        self.owner = f"{ctx.here}-{uuid.uuid4().hex[:8]}"
        self.couriers: dict[str, asyncio.Task[None]] = {}
        self.circuit: dict[str, datetime] = {}
        self.failures: dict[str, int] = {}
        self.session: ClientSession | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.local_retry: dict[str, datetime] = {}
        self.local_failures: dict[str, int] = {}

    async def start(self) -> None:
        ssl_ctx = client_context(self.ctx.tls.cert_pem, self.ctx.tls.key_pem, self.ctx.tls.ca_pem)
        self.session = ClientSession(
            connector=PinnedConnector(expect=self._expect, ssl=ssl_ctx, limit=32)
        )
        self.tasks = [
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self._deliver_loop(), name="deliver"),
            asyncio.create_task(self._expire_loop(), name="expire"),
        ]
        if not self.ctx.config.is_hub:
            self.tasks.append(asyncio.create_task(self._directory_loop(), name="directory"))

    def _crash(self, point: str) -> None:
        crash_point(self.ctx.config.relay.crash_at, point, self.ctx.config.directory)

    def _expect(self, origin: str) -> tuple[str, tuple[str, ...]] | None:
        """Which site (and pins) an endpoint belongs to, from the directory in force."""
        cfg = self.ctx.config.site
        for entry in self.ctx.directory.sites:
            if entry.endpoint.rstrip("/") == origin:
                return entry.site, entry.tls_pins
        if origin == cfg.hub_endpoint.rstrip("/"):
            return cfg.hub, ()  # the directory fetch: its content is signed
        return None

    async def stop(self) -> None:
        for task in [*self.tasks, *self.couriers.values()]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.couriers.values(), return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    # -- outbound ---------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            now = datetime.now(UTC)
            for peer in await self.ctx.store.peers_with_work(now=now):
                if peer in self.couriers and not self.couriers[peer].done():
                    continue
                if self.circuit.get(peer, now) > now:
                    continue
                self.couriers[peer] = asyncio.create_task(self._courier(peer), name=f"to-{peer}")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)

    async def _courier(self, peer: str) -> None:
        relay = self.ctx.config.relay
        assert self.session is not None
        while True:
            now = datetime.now(UTC)
            claimed = await self.ctx.store.claim(
                peer=peer,
                owner=self.owner,
                limit=relay.batch_envelopes,
                lease_seconds=relay.lease_seconds,
                now=now,
            )
            if not claimed:
                return
            self._crash("courier-after-claim")
            started = time.monotonic()
            try:
                entry = self.ctx.directory.site(peer)
                results = await post_batch(
                    self.session,
                    entry.endpoint,
                    peer,
                    [c.data for c in claimed],
                    relay.request_timeout_seconds,
                )
            except (PeerError, DirectoryError) as exc:
                self.metrics.retries.labels(peer).inc()
                await self._back_off(peer, claimed, str(exc))
                return
            self.metrics.hop_latency.labels(peer).observe(time.monotonic() - started)
            self.failures.pop(peer, None)
            done: list[tuple[str, str]] = []
            acked_receipts: list[tuple[str, str]] = []
            for c, result in zip(claimed, results, strict=True):
                status = result.get("status") if isinstance(result, dict) else None
                try:
                    if status in ("accepted", "duplicate"):
                        parsed, _ = parse_framed_head(c.data)
                        verify_ack(result.get("ack", {}), parsed, entry.verify_keys())
                        done.append((c.message_id, peer))
                        r = parsed.head.routing
                        if r.doc_class == RECEIPT_CLASS and r.origin == self.ctx.here:
                            # Receipts get no receipts: the signed hop ack is their proof.
                            acked_receipts.append((c.message_id, json.dumps(result["ack"])))
                        continue
                    reason = (
                        str(result.get("reason", "refused")) if isinstance(result, dict) else "?"
                    )
                    raise HopRefused(reason)
                except HopRefused as exc:
                    log.warning(
                        json.dumps(
                            {
                                "event": "refused",
                                "id": c.message_id,
                                "peer": peer,
                                "reason": str(exc),
                            }
                        )
                    )
                    await self.events.emit(
                        Event(
                            "failed",
                            c.message_id,
                            datetime.now(UTC),
                            {"reason": f"refused by {peer}: {exc}"},
                        )
                    )
                    await self.ctx.store.fail(
                        c.message_id,
                        peer,
                        reason=f"refused by {peer}: {exc}",
                        now=datetime.now(UTC),
                    )
            if done:
                self.metrics.forwarded.labels(peer).inc(len(done))
                self._crash("courier-after-post")
                await self.ctx.store.forwarded(done, owner=self.owner, now=datetime.now(UTC))
                for message_id, ack in acked_receipts:
                    await self.ctx.store.delivered(
                        message_id, receipt=ack.encode(), now=datetime.now(UTC)
                    )
                for message_id, _ in done:
                    log.info(json.dumps({"event": "forwarded", "id": message_id, "peer": peer}))

    async def _back_off(self, peer: str, claimed: Sequence[Claimed], reason: str) -> None:
        relay = self.ctx.config.relay
        n = self.failures.get(peer, 0) + 1
        self.failures[peer] = n
        delay = jittered(relay.retry_base_seconds, n, relay.retry_max_seconds)
        now = datetime.now(UTC)
        until = now + timedelta(seconds=delay)
        self.circuit[peer] = until
        for c in claimed:
            await self.ctx.store.defer(
                c.message_id,
                peer,
                owner=self.owner,
                reason=reason,
                next_attempt=until,
                now=now,
            )
        log.warning(
            json.dumps(
                {
                    "event": "deferred",
                    "peer": peer,
                    "count": len(claimed),
                    "reason": reason,
                    "retry_in_s": round(delay, 2),
                }
            )
        )

    # -- local delivery and receipts -----------------------------------------------

    async def _deliver_loop(self) -> None:
        while True:
            items = await self.ctx.store.inbox(state=InState.RECEIVED, limit=64)
            now = datetime.now(UTC)
            for item in items:
                if self.local_retry.get(item.message_id, now) > now:
                    continue
                try:
                    await self.deliver(item.message_id)
                    self.local_retry.pop(item.message_id, None)
                except DeliveryDeferred as exc:
                    n = self.local_failures.get(item.message_id, 0) + 1
                    self.local_failures[item.message_id] = n
                    delay = jittered(
                        self.ctx.config.relay.retry_base_seconds,
                        n,
                        self.ctx.config.relay.retry_max_seconds,
                    )
                    self.local_retry[item.message_id] = now + timedelta(seconds=delay)
                    log.warning(
                        json.dumps(
                            {
                                "event": "local_delivery_deferred",
                                "id": item.message_id,
                                "reason": str(exc),
                                "retry_in_s": round(delay, 2),
                            }
                        )
                    )
                except Exception as exc:  # one bad envelope must not stop the loop
                    log.error(
                        json.dumps(
                            {
                                "event": "delivery_error",
                                "id": item.message_id,
                                "reason": f"{type(exc).__name__}: {exc}",
                            }
                        )
                    )
                    await self.ctx.store.fail(
                        item.message_id, None, reason=str(exc), now=datetime.now(UTC)
                    )
                    await self.ctx.store.inbound_set(
                        item.message_id,
                        InState.ACKED,
                        reason=f"undeliverable: {exc}",
                        now=datetime.now(UTC),
                    )
            if not items or all(self.local_retry.get(i.message_id, now) > now for i in items):
                self.inbound.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.inbound.wait(), timeout=0.5)

    async def deliver(self, message_id: str) -> None:
        ctx = self.ctx
        record = await ctx.store.get_envelope(message_id)
        if record is None:
            return
        origin = ctx.directory.site(record.origin)
        parsed, _ = parse_framed_head(record.data)
        signer = origin.verify_keys().get(parsed.head.signature_key_id)
        if signer is None:
            raise EnvelopeError(f"signed by a key that is not {record.origin}'s")
        parsed, sealed, parts = await asyncio.to_thread(
            open_bytes, record.data, sender=signer, site=ctx.here, key=ctx.keys.decryption
        )
        now = datetime.now(UTC)
        r = parsed.head.routing
        if r.doc_class == RECEIPT_CLASS:
            await self._receipt_arrived(record, parts, now)
            await ctx.store.inbound_set(message_id, InState.ACKED, reason="receipt", now=now)
            return
        folder = ctx.config.directory / "inbox" / message_id
        _write_inbox(folder, sealed, parts)
        self._crash("deliver-after-inbox")
        await deliver_locally(ctx, message_id, sealed, folder)
        receipt = write_receipt(Receipt(r.message_id, parsed.digest, ctx.here, now))
        routing = new_routing(
            origin=ctx.here,
            destinations=[r.origin],
            now=now,
            priority=Priority.IMMEDIATE,
            doc_class=RECEIPT_CLASS,
            in_reply_to=r.message_id,
        )
        sealing = Sealing(
            routing=routing,
            sender=ctx.keys.signing,
            recipients=[Recipient(r.origin, origin.active_encryption_key())],
            sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(receipt)),)),
        )
        await submit(ctx, seal_bytes(sealing, [receipt]), now)
        self._crash("deliver-after-receipt")
        self.wake.set()
        await ctx.store.inbound_set(message_id, InState.AVAILABLE, reason="opened", now=now)
        self.metrics.delivered.inc()
        await self.events.emit(Event("received", message_id, now, {"origin": r.origin}))
        log.info(
            json.dumps(
                {
                    "event": "delivered_here",
                    "id": message_id,
                    "origin": r.origin,
                    "receipt": routing.message_id,
                }
            )
        )

    async def _receipt_arrived(
        self, record: EnvelopeRecord, parts: list[bytes], now: datetime
    ) -> None:
        receipt = parse_receipt(parts[0])
        original = await self.ctx.store.get_envelope(receipt.message_id)
        if original is None:
            raise EnvelopeError(f"receipt for unknown message {receipt.message_id}")
        if receipt.site != record.origin or receipt.site not in original.destinations:
            raise EnvelopeError("receipt signed by a site that is not a destination")
        if receipt.envelope_digest != original.digest:
            raise EnvelopeError("receipt digest does not match the envelope sent")
        self._crash("receipt-before-mark")
        if await self.ctx.store.delivered(receipt.message_id, receipt=record.data, now=now):
            self.metrics.receipts.inc()
            await self.events.emit(
                Event("delivered", receipt.message_id, now, {"by": receipt.site})
            )
            log.info(
                json.dumps({"event": "delivered", "id": receipt.message_id, "by": receipt.site})
            )

    # -- housekeeping --------------------------------------------------------------

    async def _expire_loop(self) -> None:
        while True:
            now = datetime.now(UTC)
            for message_id in await self.ctx.store.expire(now=now):
                log.warning(json.dumps({"event": "failed", "id": message_id, "reason": "expired"}))
                await self.events.emit(Event("failed", message_id, now, {"reason": "expired"}))
            await asyncio.sleep(1.0)

    async def _directory_loop(self) -> None:
        cfg = self.ctx.config
        assert self.session is not None
        while True:
            try:
                data = await fetch_directory(
                    self.session,
                    cfg.site.hub_endpoint,
                    cfg.site.hub,
                    cfg.relay.request_timeout_seconds,
                )
                if self.ctx.install_directory(data):
                    log.info(
                        json.dumps({"event": "directory", "serial": self.ctx.directory.serial})
                    )
            except (PeerError, DirectoryError) as exc:
                log.warning(
                    json.dumps(
                        {
                            "event": "directory_kept",
                            "serial": self.ctx.directory.serial,
                            "reason": str(exc),
                        }
                    )
                )
            await asyncio.sleep(cfg.relay.directory_poll_seconds)


def _write_inbox(folder: Path, sealed: SealedHeader, parts: list[bytes]) -> None:
    """Write the opened parts atomically: a staging folder renamed into place."""
    if folder.exists():
        return  # already delivered before a crash; exactly once
    from gateway.envelope_io import _unique_names, safe_name

    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    names = _unique_names([safe_name(p.name) for p in sealed.parts])
    for name, data in zip(names, parts, strict=True):
        (staging / name).write_bytes(data)
    meta = {
        "subject": sealed.subject,
        "parts": [
            {"name": n, "media_type": p.media_type, "size": p.size}
            for n, p in zip(names, sealed.parts, strict=True)
        ],
    }
    (staging / ".valise.json").write_text(json.dumps(meta))
    staging.replace(folder)
