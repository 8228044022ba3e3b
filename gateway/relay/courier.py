"""Couriers: outbound work, one courier task per peer, started by the dispatcher.

Rules:
- A courier claims a batch for one peer under a lease, posts it, and marks each
  envelope forwarded only after verifying that peer's signed hop acknowledgement,
  in one transaction for the batch (with the receipts sealed here that the peer
  acknowledged: a receipt's signed hop ack is its proof of delivery).
- A failure defers the whole batch with exponential backoff and jitter, and the
  courier for that peer sleeps through the same delay (a per-peer circuit: a dead
  mission is tried once per backoff step, not once per message).
- Each envelope's answer is decided by its kind (gateway/runtime/errors.py): a Retry
  (``retry``, or an ack signed by a key our directory does not list yet:
  HopUnknownKey) defers it until the next directory poll; a Refused (``refused``, or an
  ack that does not verify: HopRefused) fails it towards that peer, or holds it for its
  origin's re-seal.
- Up to ``COURIERS_PER_PEER`` couriers run for one peer at once, each with its own
  claimed batch: one batch can be on the wire while the next is claimed and posted
  (the claim's lease keeps them apart).
- Work queued in this process (a hop accepted, a receipt sealed, a bridge's
  submission) pokes its peers' couriers (:meth:`Couriers.poke`): a courier starts at
  once unless one is about to claim anyway. The dispatcher looks for due work in the
  store when woken (a notice that another process queued work) and at least every
  ``IDLE_POLL_SECONDS`` (deferred work falling due, leases running out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import ClientSession

from crypto.keys import VerifyKey
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS
from gateway.relay.channel_client import post_batch
from gateway.relay.circular_status import emit_closed
from gateway.relay.hop import HopRefused, HopUnknownKey, verify_ack, verify_hop_ack
from gateway.relay.reseal import HOLD_REASON
from gateway.runtime import logjson
from gateway.runtime.backoff import jittered
from gateway.runtime.errors import Refused, Retry
from gateway.runtime.events import EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext
from gateway.store.base import Claimed
from routing.directory import DirectoryError

log = logging.getLogger("valise.delivery")
IDLE_POLL_SECONDS = 0.5
COURIERS_PER_PEER = 2


def _check_ack(c: Claimed, ack: object, keys: dict[str, VerifyKey]) -> tuple[str, str]:
    """Verify the peer's hop acknowledgement of ``c``; return the envelope's (origin,
    document class). Raises HopRefused or HopUnknownKey."""
    if c.chain is not None and c.digest:
        verify_hop_ack(ack, c.digest, c.chain, keys)
        return c.origin, c.doc_class
    parsed, _ = parse_framed_head(c.data)  # stored before the store kept the chain
    verify_ack(ack if isinstance(ack, dict) else {}, parsed, keys)
    return parsed.head.routing.origin, parsed.head.routing.doc_class


class Couriers:
    """The dispatcher loop and the courier of each peer."""

    def __init__(
        self,
        ctx: SiteContext,
        *,
        owner: str,
        wake: asyncio.Event,
        metrics: Metrics,
        events: EventBus,
        crash: Callable[[str], None],
    ) -> None:
        self.ctx = ctx
        self.owner = owner
        self.wake = wake
        self.metrics = metrics
        self.events = events
        self.crash = crash
        self.session: ClientSession | None = None
        self.tasks: dict[str, list[asyncio.Task[None]]] = {}
        self.circuit: dict[str, datetime] = {}
        self.failures: dict[str, int] = {}
        self.claiming: dict[str, int] = {}  # couriers of a peer about to claim, or claiming
        self.poked: set[str] = set()  # peers with work queued since their last claim began

    def poke(self, peers: Iterable[str]) -> None:
        """Work for ``peers`` was just committed: see that a courier will claim it."""
        for peer in peers:
            self.poked.add(peer)
            self._ensure(peer)

    def _ensure(self, peer: str) -> None:
        """Start a courier for ``peer`` unless one is about to claim (it will see the work),
        the peer has its quota of couriers posting, or its circuit is open."""
        running = [t for t in self.tasks.get(peer, []) if not t.done()]
        if (
            not self.claiming.get(peer)
            and len(running) < COURIERS_PER_PEER
            and not self._tripped(peer)
        ):
            running.append(asyncio.create_task(self.run(peer), name=f"to-{peer}"))
        self.tasks[peer] = running

    async def dispatch(self) -> None:
        while True:
            # Cleared before looking, so that a wake-up during the query is not lost.
            self.wake.clear()
            for peer in await self.ctx.store.peers_with_work(now=datetime.now(UTC)):
                self._ensure(peer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=IDLE_POLL_SECONDS)

    async def stop(self) -> None:
        tasks = [t for running in self.tasks.values() for t in running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self, peer: str) -> None:
        """Send batches to ``peer`` until its due work is done (or it fails)."""
        while not self._tripped(peer):
            self.claiming[peer] = self.claiming.get(peer, 0) + 1
            try:
                self.poked.discard(peer)
                claimed = await self._claim(peer)
            finally:
                self.claiming[peer] -= 1
            if not claimed:
                if peer in self.poked:
                    continue  # work was queued while we claimed: look again
                return
            if peer in self.poked:
                self._ensure(peer)  # a second courier for what came in meanwhile
            if not await self._post(peer, claimed):
                return
            if len(claimed) < self.ctx.config.relay.batch_envelopes and peer not in self.poked:
                return  # the claim took all there was, and nothing came since

    def _tripped(self, peer: str) -> bool:
        """Is ``peer``'s circuit open (a courier backed off; wait until it is due)?"""
        until = self.circuit.get(peer)
        return until is not None and until > datetime.now(UTC)

    async def _claim(self, peer: str) -> list[Claimed]:
        relay = self.ctx.config.relay
        return await self.ctx.store.claim(
            peer=peer,
            owner=self.owner,
            limit=relay.batch_envelopes,
            lease_seconds=relay.lease_seconds,
            now=datetime.now(UTC),
        )

    async def _post(self, peer: str, claimed: list[Claimed]) -> bool:
        """Post a claimed batch and settle it; False if the peer failed (backed off)."""
        relay = self.ctx.config.relay
        assert self.session is not None
        self.crash("courier-after-claim")
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
        except (Retry, DirectoryError) as exc:  # PeerError: the whole batch waits
            self.metrics.retries.labels(peer).inc()
            await self._back_off(peer, claimed, str(exc))
            return False
        self.metrics.hop_latency.labels(peer).observe(time.monotonic() - started)
        self.failures.pop(peer, None)
        keys = entry.verify_keys()
        done: list[tuple[str, str]] = []
        later: list[Claimed] = []
        reason = ""
        acked_receipts: list[tuple[str, bytes]] = []
        for c, result in zip(claimed, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            try:
                if status == "retry":
                    raise HopUnknownKey(str(result.get("reason", "retry")))
                if status not in ("accepted", "duplicate"):
                    reason = (
                        str(result.get("reason", "refused")) if isinstance(result, dict) else "?"
                    )
                    raise HopRefused(reason)
                origin, doc_class = _check_ack(c, result.get("ack"), keys)
            except Retry as exc:
                # A key newer than one of the two directories: try again after a poll.
                later.append(c)
                reason = str(exc)
                continue
            except Refused as exc:
                await self._refused(c, peer, str(exc))
                continue
            done.append((c.message_id, peer))
            if doc_class == RECEIPT_CLASS and origin == self.ctx.here:
                # Receipts get no receipts: the signed hop ack is their proof.
                acked_receipts.append((c.message_id, json.dumps(result["ack"]).encode()))
        if done:
            self.metrics.forwarded.labels(peer).inc(len(done))
            self.crash("courier-after-post")
            await self.ctx.store.forwarded(
                done, owner=self.owner, now=datetime.now(UTC), receipts=acked_receipts
            )
            logjson.each(log, logging.INFO, "forwarded", [{"id": m} for m, _ in done], peer=peer)
        if later:
            now = datetime.now(UTC)
            until = now + timedelta(seconds=self.ctx.config.relay.directory_poll_seconds)
            for c in later:
                await self.ctx.store.defer(
                    c.message_id, peer, owner=self.owner, reason=reason, next_attempt=until, now=now
                )
            logjson.event(log, logging.INFO, "deferred", peer=peer, count=len(later), reason=reason)
        return True

    async def _refused(self, c: Claimed, peer: str, reason: str) -> None:
        logjson.event(log, logging.WARNING, "refused", id=c.message_id, peer=peer, reason=reason)
        now = datetime.now(UTC)
        if reason.startswith(HOLD_REASON):
            # Sealed to a key the peer no longer accepts: held for its origin's re-seal
            # (gateway/relay/reseal.py), which takes this copy's place; not failed.
            await self.ctx.store.hold(c.message_id, now=now, reason=f"{reason} ({peer})")
            return
        why = f"refused by {peer}: {reason}"
        # Only while this try's lease holds: the origin's re-sealed copy may have taken
        # the row's place meanwhile (review 10c F1: the refusal of the old copy failed
        # the new one, which was then never sent).
        closed = await self.ctx.store.fail(
            c.message_id, peer, reason=why, now=now, owner=self.owner
        )
        if closed is not None:
            await emit_closed(self.events, self.ctx.store, closed, now)

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
        logjson.event(
            log,
            logging.WARNING,
            "deferred",
            peer=peer,
            count=len(claimed),
            reason=reason,
            retry_in_s=round(delay, 2),
        )
