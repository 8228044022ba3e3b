"""Queueing an envelope this site sealed (the origin side), and the records it makes.

:func:`submit_sealed` queues an envelope from its :class:`Sealing` (routing and digest
known: no head parse); :func:`submit` queues framed bytes (one parse). Either returns
once the envelope is durably queued, then calls ``ctx.notify()`` so that a running
site's dispatcher sends it at once.

Rules:
- Every envelope this site originates passes here (the HTTP API, the SMTP bridge,
  ``valise send``), so the bound on its lifetime is kept here: ``expires`` at most
  ``[relay] max_expires_days`` after now (:func:`check_expires`). Stores keep an
  envelope, its dedupe row and its tombstone until it expires: a sender must not
  make them keep anything for ever. Bridges check it earlier to answer in their own
  words; this check is the one none can skip.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from crypto.keys import EncryptionKey
from envelope.errors import UsageError
from envelope.head import ParsedHead
from envelope.model import RoutingHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS
from envelope.seal import Sealing
from envelope.values import format_time
from gateway.site.context import SiteContext
from gateway.store.base import EnvelopeRecord
from routing.decision import Action, route


class ExpiresRefused(UsageError):
    """An expiry in the past, or further ahead than this site lets a document live."""


def longest_lifetime(ctx: SiteContext) -> timedelta:
    """How far ahead a document sealed here may expire: ``[relay] max_expires_days``."""
    return timedelta(days=ctx.config.relay.max_expires_days)


def check_expires(expires: datetime, now: datetime, longest: timedelta) -> datetime:
    """``expires`` if it is after ``now`` and at most ``longest`` after it.
    Raises :class:`ExpiresRefused`."""
    if expires <= now:
        raise ExpiresRefused(f"expires {format_time(expires)} is not in the future")
    if expires - now > longest:
        raise ExpiresRefused(
            f"expires {format_time(expires)} is more than {longest.days} days ahead"
            " (the most [relay] max_expires_days allows)"
        )
    return expires


def record_for(data: bytes, received_from: str | None) -> EnvelopeRecord:
    parsed, _ = parse_framed_head(data)
    return parsed_record(parsed, received_from, data)


def parsed_record(parsed: ParsedHead, received_from: str | None, data: bytes) -> EnvelopeRecord:
    """The record of ``data`` whose head is ``parsed``."""
    head = parsed.head
    chain = head.trace[-1].signature if head.trace else head.signature
    return _record(head.routing, parsed.digest, received_from, data, chain)


def sealed_record(
    sealing: Sealing, data: bytes, escrow_to: EncryptionKey | None = None
) -> EnvelopeRecord:
    """The record of an envelope just sealed here (``seal_bytes(sealing, ...)``); with
    ``escrow_to`` (this site's own encryption key) it keeps the content key wrapped to
    it, so the envelope can be re-sealed (gateway/relay/reseal.py)."""
    record = _record(sealing.routing, sealing.digest, None, data, sealing.signature)
    if escrow_to is None:
        return record
    return replace(record, escrow=sealing.escrow(escrow_to))


def _record(
    r: RoutingHeader, digest: bytes, received_from: str | None, data: bytes, chain: bytes
) -> EnvelopeRecord:
    return EnvelopeRecord(
        message_id=r.message_id,
        origin=r.origin,
        destinations=r.destinations,
        digest=digest,
        created=r.created,
        expires=r.expires,
        priority=r.priority.value,
        received_from=received_from,
        data=data,
        doc_class=r.doc_class,
        chain=chain,
    )


def route_here(r: RoutingHeader, *, here: str, hub: str) -> tuple[tuple[str, ...], bool]:
    """(next hops, deliver here) of an envelope this site sealed."""
    decisions = route(r, here=here, hub=hub)
    next_hops = tuple(sorted({d.next_hop for d in decisions if d.next_hop}))
    return next_hops, any(d.action is Action.DELIVER for d in decisions)


def routes_here(r: RoutingHeader, *, here: str, hub: str) -> tuple[tuple[str, str | None], ...]:
    """(destination, next hop or None: delivered here) for each destination of an
    envelope this site sealed: its destination rows (none for a receipt)."""
    if r.doc_class == RECEIPT_CLASS:
        return ()
    return tuple((d.destination, d.next_hop) for d in route(r, here=here, hub=hub))


async def _queue(
    ctx: SiteContext,
    record: EnvelopeRecord,
    r: RoutingHeader,
    now: datetime,
    held: str | None = None,
) -> None:
    check_expires(r.expires, now, longest_lifetime(ctx))
    next_hops, here = route_here(r, here=ctx.here, hub=ctx.directory.hub)
    routes = routes_here(r, here=ctx.here, hub=ctx.directory.hub)
    await ctx.store.accept(
        replace(record, routes=routes),
        next_hops=next_hops,
        deliver_here=here,
        hop_ack=None,
        now=now,
        held=held,
    )
    if held is None:
        ctx.queued.ring(next_hops)


async def submit(ctx: SiteContext, data: bytes, now: datetime) -> None:
    """Queue an envelope this site sealed (origin side). Raises :class:`ExpiresRefused`."""
    parsed, _ = parse_framed_head(data)
    await _queue(ctx, parsed_record(parsed, None, data), parsed.head.routing, now)


async def submit_sealed(
    ctx: SiteContext, sealing: Sealing, data: bytes, now: datetime, *, held: str | None = None
) -> None:
    """Queue ``data`` = ``seal_bytes(sealing, ...)`` (or the file seal_to_file wrote)
    without parsing its head again, with its escrow; with ``held``, its deliveries are
    held for that reason from the start (gateway/relay/key_wait.py). Raises
    :class:`ExpiresRefused`, StoreError."""
    record = sealed_record(sealing, data, escrow_to=ctx.keys.decryption.public)
    await _queue(ctx, record, sealing.routing, now, held)
