"""Queueing an envelope this site sealed (the origin side), and the records it makes.

:func:`submit_sealed` queues an envelope from its :class:`Sealing` (routing and digest
known: no head parse); :func:`submit` queues framed bytes (one parse). Either returns
once the envelope is durably queued, then calls ``ctx.notify()`` so that a running
site's dispatcher sends it at once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from crypto.keys import EncryptionKey
from envelope.head import ParsedHead
from envelope.model import RoutingHeader
from envelope.open import parse_framed_head
from envelope.seal import Sealing
from gateway.site import SiteContext
from gateway.store.base import EnvelopeRecord
from routing.decision import Action, route


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
    it, so the envelope can be re-sealed (gateway/reseal.py)."""
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


async def _queue(ctx: SiteContext, record: EnvelopeRecord, r: RoutingHeader, now: datetime) -> None:
    next_hops, here = route_here(r, here=ctx.here, hub=ctx.directory.hub)
    await ctx.store.accept(record, next_hops=next_hops, deliver_here=here, hop_ack=None, now=now)
    ctx.notify(next_hops)


async def submit(ctx: SiteContext, data: bytes, now: datetime) -> None:
    """Queue an envelope this site sealed (origin side)."""
    parsed, _ = parse_framed_head(data)
    await _queue(ctx, parsed_record(parsed, None, data), parsed.head.routing, now)


async def submit_sealed(ctx: SiteContext, sealing: Sealing, data: bytes, now: datetime) -> None:
    """Queue ``data`` = ``seal_bytes(sealing, ...)`` (or the file seal_to_file wrote)
    without parsing its head again, with its escrow."""
    record = sealed_record(sealing, data, escrow_to=ctx.keys.decryption.public)
    await _queue(ctx, record, sealing.routing, now)
