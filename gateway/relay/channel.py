"""The channel: HTTPS, TLS 1.3, mutual certificates from the site CA.

Server routes (one aiohttp application, resources under typed AppKeys):
    POST /v1/hop         a batch of envelopes from a peer; answers one result each
    GET  /v1/directory   the current signed directory (missions pull it)
    GET  /v1/directory/fetched  HQ only: the newest version all sites fetched (key_announce.py)
    POST /v1/enroll      HQ only: a joining mission's public keys (gateway/trust/enroll.py)
    POST /v1/keys        HQ only: a site's signed key changes (gateway/trust/key_updates.py)
    POST /v1/timestamp   HQ only: RFC 3161 requests, a batch (gateway/proof/timestamping.py)
    POST /v1/witness     HQ only: a site's audit checkpoint, witnessed and time-stamped
    GET  /v1/witness     HQ only: what HQ witnessed of the asking site (gateway/proof/witness.py)

Rules:
- Every request's TLS peer is identified by the site id in its certificate, and
  that certificate's key must be pinned for that site in the directory.
- Bodies are bounded (``max_request_bytes``) and must arrive within
  ``request_timeout_seconds``: aiohttp has no slow-body timeout of its own.
- A batch is validated envelope by envelope, then every accepted envelope is
  committed in one transaction before any acknowledgement is sent. A check that fails
  is answered by its kind (gateway/runtime/errors.py): a Retry (HopUnknownKey) as
  ``retry``, a Refused (HopRefused) or a malformed envelope as ``refused``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiohttp import web

from crypto.x509 import certificate_pin, certificate_serial, site_id_from_certificate
from envelope.errors import EnvelopeError
from envelope.receipt import RECEIPT_CLASS
from envelope.replacement import ReplacementRefused
from gateway.proof import audit
from gateway.relay.ack_renewal import ack_for_repeat
from gateway.relay.hop import (
    MEDIA_TYPE,
    Checked,
    HeadCache,
    HopRefused,
    check_envelope,
    check_receipt,
    receipts_to_check,
    split_batch,
)
from gateway.relay.reseal import stale_for_here, take_resealed_copy
from gateway.runtime import logjson
from gateway.runtime.errors import Refused, Retry
from gateway.runtime.faults import crash_point
from gateway.runtime.metrics import Metrics
from gateway.site.appkeys import CONTEXT, METRICS, PEER, PIN, SERIAL
from gateway.site.context import SiteContext
from gateway.site.tls import TLSConfigError, peer_certificate
from gateway.store.base import Acceptance, StoreError
from gateway.trust import tls_identity

log = logging.getLogger("valise.channel")


class CourierWake(Protocol):
    """Start the couriers of these peers now (the hop handler calls it when a batch it
    accepted has work for them): how the channel's server half wakes the outbound side
    without knowing it."""

    def __call__(self, peers: Iterable[str]) -> None: ...


WAKE = web.AppKey("wake", asyncio.Event)
INBOUND = web.AppKey("inbound", asyncio.Event)
HEADS = web.AppKey("heads", HeadCache)
POKE = web.AppKey("poke", CourierWake)
# The TLS connections whose peer key was logged (their SSL objects, gone with them).
CONNECTIONS = web.AppKey("connections", weakref.WeakSet)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A site fetching the same directory version again is recorded at most this often
# (valise directory status shows the version and the time of the last record).
FETCH_RECORD_SECONDS = 60.0
# Paths a site certificate of the CA may use without its key pinned, each for one
# purpose decided by gateway/trust/tls_identity.py (identify_peer).
UNPINNED_PATHS = tls_identity.UNPINNED_PATHS


def _crash(ctx: SiteContext, point: str) -> None:
    crash_point(ctx.config.relay.crash_at, point, ctx.config.directory)


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def identify_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    try:
        peer, pin, serial = _identity(peer_certificate(ssl_object))
    except (TLSConfigError, Exception) as exc:  # no or unreadable certificate
        log.warning(json.dumps({"event": "refused", "reason": f"peer certificate: {exc}"}))
        return _refuse(403, "a site certificate is required")
    request[PEER] = peer
    if request.path in UNPINNED_PATHS:
        # A bootstrap certificate serves its pending join only; a key update needs a
        # pinned key or the narrow recovery case; the directory is signed and public,
        # so a site whose keys HQ revoked still learns it (gateway/trust/tls_identity.py).
        request[PIN] = pin
        request[SERIAL] = serial
        cert = tls_identity.PeerCertificate(peer, pin, serial)
        try:
            request[tls_identity.STANDING] = await tls_identity.admit(
                request.path, cert, ctx.directory, ctx.store
            )
        except tls_identity.IdentityRefused as exc:
            log.warning(json.dumps({"event": "refused", "peer": peer, "reason": str(exc)}))
            refused = _refuse(403, str(exc))
            refused.force_close()
            return refused
        except StoreError as exc:
            log.warning(json.dumps({"event": "deferred", "peer": peer, "reason": str(exc)}))
            return _refuse(503, "the store is unavailable; try again later")
        return await handler(request)
    if not ctx.directory.knows(peer) or pin not in ctx.directory.site(peer).tls_pins:
        log.warning(
            json.dumps({"event": "refused", "peer": peer, "reason": "pin not in directory"})
        )
        refused = _refuse(403, f"certificate of {peer} is not pinned in the directory")
        # Close the connection: a peer that has rotated its TLS key then reconnects with
        # the new one instead of reusing a kept-alive connection made with the old one.
        refused.force_close()
        return refused
    _log_new_connection(request.app, ssl_object, peer, pin)
    return await handler(request)


def _log_new_connection(app: web.Application, ssl_object: Any, peer: str, pin: str) -> None:
    """Log the TLS key a peer presents, once per connection: after a rotation, the
    state shows whether the peer has switched to its new key (active) yet."""
    seen = app.get(CONNECTIONS)
    if seen is None or ssl_object is None or ssl_object in seen:
        return
    seen.add(ssl_object)
    state = app[CONTEXT].directory.key_owners.get(pin, ("", "", None))[2]
    logjson.event(
        log,
        logging.INFO,
        "peer_tls",
        peer=peer,
        pin=pin,
        state=state.value if state is not None else "",
    )


@functools.lru_cache(maxsize=256)
def _identity(der: bytes) -> tuple[str, str, str]:
    """(site id, SPKI pin, serial) of a peer certificate the handshake verified (DER):
    read once per certificate, not once per request."""
    return site_id_from_certificate(der), certificate_pin(der), certificate_serial(der)


async def _read_body(request: web.Request) -> bytes:
    ctx = request.app[CONTEXT]
    return await asyncio.wait_for(request.read(), ctx.config.relay.request_timeout_seconds)


async def hop(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    peer: str = request[PEER]
    if request.content_type != MEDIA_TYPE:
        return _refuse(415, f"expected {MEDIA_TYPE}")
    try:
        body = await _read_body(request)
    except TimeoutError:
        return _refuse(408, "request body too slow")
    now = datetime.now(UTC)
    results: list[dict[str, Any] | _Raw] = []
    accepted: list[tuple[int, Checked]] = []
    try:
        envelopes = list(split_batch(body))
    except EnvelopeError as exc:
        return _refuse(400, f"batch refused: {exc}")
    for data, parsed in envelopes:
        try:
            checked = check_envelope(
                data,
                peer=peer,
                here=ctx.here,
                key=ctx.keys.signing,
                directory=ctx.directory,
                now=now,
                parsed=parsed,
                longest=timedelta(days=ctx.config.relay.max_expires_days),
            )
        except Retry as exc:
            results.append({"status": "retry", "reason": str(exc)})
            logjson.event(log, logging.INFO, "hop_retry", peer=peer, reason=str(exc))
            continue
        except (Refused, EnvelopeError) as exc:
            results.append({"status": "refused", "reason": str(exc)})
            request.app[METRICS].refused.labels(peer).inc()
            logjson.event(log, logging.WARNING, "hop_refused", peer=peer, reason=str(exc))
            continue
        accepted.append((len(results), checked))
        results.append({"status": "accepted", "id": checked.record.message_id})
    accepted = await _fitting_receipts(request, accepted, results)
    accepted = await _opening_here(request, accepted, results)
    if accepted:
        _crash(ctx, "hop-before-commit")
        outcomes = await ctx.store.accept_many(
            [(c.record, c.next_hops, c.deliver_here, c.hop_ack) for _, c in accepted], now=now
        )
        resealed, refused = await _repeated(request, accepted, outcomes, now)
        if resealed:
            logjson.each(log, logging.INFO, "resealed", [{"id": m} for m in resealed], peer=peer)
        counts = {"new": 0, "duplicate": 0}
        rows: dict[str, list[dict[str, str]]] = {"accepted": [], "duplicate": []}
        heads = request.app.get(HEADS)
        for (index, checked), outcome in zip(accepted, outcomes, strict=True):
            if index in refused:
                results[index] = {"status": "refused", "reason": refused[index]}
                continue
            fresh = outcome.new or checked.record.message_id in resealed
            ack = checked.hop_ack
            if not fresh and outcome.hop_ack is not None:
                ack = await ack_for_repeat(ctx, checked, outcome.hop_ack, now)
            status = "accepted" if fresh else "duplicate"
            results[index] = _Raw(status, checked.record.message_id, ack)
            if outcome.new and checked.deliver_here and heads is not None:
                r = checked.record
                heads.put(r.message_id, checked.parsed, checked.offset, r.data)
            counts["new" if outcome.new else "duplicate"] += 1
            if outcome.new and checked.record.answers and not checked.deliver_here:
                # a relayed receipt: its destination is delivered here (gateway/relay/hop.py)
                receipts = request.app[METRICS].destination_receipts
                receipts.labels(checked.record.origin, "relayed").inc()
            rows[status].append({"id": checked.record.message_id})
        accepted_total = request.app[METRICS].accepted
        for kind, n in counts.items():
            if n:
                accepted_total.labels(peer, kind).inc(n)
        for status, ids in rows.items():
            logjson.each(log, logging.INFO, status, ids, peer=peer)
        _crash(ctx, "hop-after-commit")
        poke = request.app.get(POKE)
        if callable(poke):
            poke(
                {
                    hop
                    for (_, c), o in zip(accepted, outcomes, strict=True)
                    if o.new or c.record.message_id in resealed
                    for hop in c.next_hops
                }
            )
        else:
            request.app[WAKE].set()
        if any(c.deliver_here for _, c in accepted):
            request.app[INBOUND].set()
    return web.Response(body=_results_json(results), content_type="application/json")


async def _opening_here(
    request: web.Request, accepted: list[tuple[int, Checked]], results: list[Any]
) -> list[tuple[int, Checked]]:
    """``accepted`` less the envelopes new here wrapped to us under a key of ours we no
    longer accept (revoked, retired): refused, with a reason for which the sender holds
    them until their origin re-seals them (gateway/relay/reseal.py stale_for_here). Taken,
    such a copy would be failed here, and its re-sealed copy then seen as a duplicate:
    the message lost. One stored here already is a duplicate as ever."""
    ctx, peer = request.app[CONTEXT], request[PEER]
    stale = {i: why for i, c in accepted if (why := stale_for_here(ctx, c.parsed)) is not None}
    if not stale:
        return accepted
    known = await ctx.store.sent_digests([c.record.message_id for i, c in accepted if i in stale])
    kept: list[tuple[int, Checked]] = []
    for index, c in accepted:
        if index in stale and c.record.message_id not in known:
            results[index] = {"status": "refused", "reason": stale[index]}
            request.app[METRICS].refused.labels(peer).inc()
            logjson.event(log, logging.WARNING, "hop_refused", peer=peer, reason=stale[index])
            continue
        kept.append((index, c))
    return kept


async def _fitting_receipts(
    request: web.Request, accepted: list[tuple[int, Checked]], results: list[Any]
) -> list[tuple[int, Checked]]:
    """``accepted`` less the receipts that do not fit the message they answer as this
    hub holds it (gateway/relay/hop.py check_receipt), each refused in ``results``."""
    ctx, peer = request.app[CONTEXT], request[PEER]
    answered = receipts_to_check((c for _, c in accepted), here=ctx.here, hub=ctx.directory.hub)
    if not answered:
        return accepted
    own = [c.record.message_id for _, c in accepted if c.record.doc_class == RECEIPT_CLASS]
    held = await ctx.store.message_routes([m for m in answered if m is not None] + own)
    kept: list[tuple[int, Checked]] = []
    for index, c in accepted:
        r = c.parsed.head.routing
        if r.doc_class == RECEIPT_CLASS:
            original = held.get(r.in_reply_to or "")
            # A receipt envelope whose own id is stored here already is another copy of
            # that envelope (its sender's re-seal, gateway/relay/receipt_reseal.py), not a second
            # receipt: _repeated takes it only if it is a re-seal of the stored copy.
            again = c.record.message_id in held
            digest = None if again else c.parsed.digest
            try:
                check_receipt(r, original, here=ctx.here, receipt_digest=digest)
                if original is not None:  # a second, different one in this batch too
                    original.receipted.setdefault(r.origin, c.parsed.digest)
            except HopRefused as exc:
                results[index] = {"status": "refused", "reason": str(exc)}
                request.app[METRICS].refused.labels(peer).inc()
                logjson.event(log, logging.WARNING, "hop_refused", peer=peer, reason=str(exc))
                continue
        kept.append((index, c))
    return kept


async def _repeated(
    request: web.Request,
    accepted: Sequence[tuple[int, Checked]],
    outcomes: Sequence[Acceptance],
    now: datetime,
) -> tuple[set[str], dict[int, str]]:
    """The envelopes of a batch whose message id was known here: those taken in place
    of a held copy (gateway/relay/reseal.py), and the refused ones by result index with
    their reason: an id the operator deleted (its tombstone), a copy that is not a
    re-seal of the stored one by its origin (a forgery attempt: logged and audited),
    or a second receipt the store refused (Acceptance.refused)."""
    ctx, peer = request.app[CONTEXT], request[PEER]
    resealed: set[str] = set()
    refused: dict[int, str] = {}
    for (index, c), outcome in zip(accepted, outcomes, strict=True):
        mid = c.record.message_id
        if outcome.refused is not None:
            # A second receipt from a destination, its first recorded by a request
            # that raced this one's hop check (the store refused it: review 11b, F3).
            refused[index] = outcome.refused
            logjson.event(log, logging.WARNING, "hop_refused", peer=peer, reason=refused[index])
        elif outcome.deleted:
            refused[index] = (
                f"message {mid} was deleted at {ctx.here} by its operator;"
                " it is not accepted again before it expires"
            )
            logjson.event(log, logging.WARNING, "hop_refused", peer=peer, reason=refused[index])
        elif not outcome.new:
            try:
                if await take_resealed_copy(ctx, c.record, c.parsed, hop_ack=c.hop_ack, now=now):
                    resealed.add(mid)
            except ReplacementRefused as exc:
                refused[index] = str(exc)
                logjson.event(
                    log, logging.WARNING, "forgery_attempt", peer=peer, id=mid, reason=str(exc)
                )
                await _audit_forgery(ctx, peer, mid, str(exc), now)
        if index in refused:
            request.app[METRICS].refused.labels(peer).inc()
    return resealed, refused


async def _audit_forgery(
    ctx: SiteContext, peer: str, message_id: str, reason: str, at: datetime
) -> None:
    try:
        await audit.record(
            ctx.store,
            actor=ctx.here,
            action="hop.forgery",
            subject=message_id,
            result="refused",
            detail={"peer": peer, "reason": reason},
            now=at,
        )
    except audit.AuditError as exc:  # the refusal stands; the log says why it is not audited
        logjson.event(log, logging.WARNING, "audit_failed", id=message_id, reason=str(exc))


@dataclass(frozen=True)
class _Raw:
    """An accepted result whose ack is the JSON the store holds (no decode/encode)."""

    status: str
    message_id: str
    ack: bytes


def _results_json(results: Sequence[dict[str, Any] | _Raw]) -> bytes:
    out = []
    for r in results:
        if isinstance(r, _Raw):
            head = json.dumps({"status": r.status, "id": r.message_id})[:-1]
            out.append(head.encode() + b', "ack": ' + r.ack + b"}")
        else:
            out.append(json.dumps(r).encode())
    return b'{"results": [' + b", ".join(out) + b"]}"


async def directory(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    peer, serial = request[PEER], ctx.directory.serial
    last = ctx.fetched.get(peer)
    # A fetch counts for key announcements (gateway/trust/announce.py) only if made with a
    # certificate whose key is pinned for the site now (next, active or retiring): the
    # directory is public, but a revoked (stolen) or replaced key must not make HQ
    # believe the site has learnt a new key (review 10, F3).
    pinned = request.get(tls_identity.STANDING) is tls_identity.Standing.PINNED
    due = last is None or last[0] != serial or time.monotonic() - last[1] > FETCH_RECORD_SECONDS
    if pinned and due:
        await ctx.store.directory_fetched(peer, serial, now=datetime.now(UTC))
        ctx.fetched[peer] = (serial, time.monotonic())
    return web.Response(body=ctx.directory.raw, content_type="application/vnd.valise.directory+xml")


def make_app(
    ctx: SiteContext,
    wake: asyncio.Event,
    inbound: asyncio.Event,
    metrics: Metrics,
    heads: HeadCache | None = None,
    poke: CourierWake | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[identify_peer],
        client_max_size=ctx.config.relay.max_request_bytes,
        handler_args={"max_line_size": 8190, "max_field_size": 8190},
    )
    app[CONTEXT] = ctx
    app[CONNECTIONS] = weakref.WeakSet()
    app[WAKE] = wake
    app[INBOUND] = inbound
    app[METRICS] = metrics
    if heads is not None:
        app[HEADS] = heads
    if poke is not None:
        app[POKE] = poke
    app.router.add_post("/v1/hop", hop)
    app.router.add_get("/v1/directory", directory)
    return app
