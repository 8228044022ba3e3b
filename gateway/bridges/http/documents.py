"""``POST /v1/documents`` (submit) and ``GET /v1/documents/{id}`` (status, history,
receipts: one per destination, ``/v1/documents/{id}/receipts/{site}``).

Rules:
- ``202`` is answered only after the envelope is durably queued (send_files returns
  after the store's commit); ``Location`` names the status resource.
- With an ``Idempotency-Key`` the message id is reserved in the store before
  sealing: the same key with the same request (same fingerprint) answers the same
  id and queues nothing more, even after a crash between reserving and queueing
  (the store accepts a message id once); with a different request it is 409.
- Every value is checked before the key is reserved, so a refused request never
  burns its key.
- An integrator sees the status and receipts of the messages it submitted, and no
  others: another's message is 404 whatever else the path says (ownership is checked
  before the site in ``/receipts/{site}``).
- The status document is built by gateway/bridges/http/status.py from the message's
  per-destination state (gateway/relay/circular_status.py): ``delivered`` only when every
  destination's receipt is in. ``/receipt`` serves the one receipt of a
  single-destination document and answers 409 ``circular`` for more destinations;
  ``/receipts/{site}`` answers 404 for a site that is not a destination.
- A destination in force with no active encryption key yet (its key was revoked and
  the replacement is not published) is not refused: the document is queued held and
  sealed to the new key once the directory has one (gateway/relay/key_wait.py); the 202
  names it in ``waiting_for_key``. A site not in the directory is ``unknown_site``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from envelope.errors import EnvelopeError
from envelope.limits import MAX_DESTINATIONS
from envelope.model import PartInfo
from envelope.open import parse_framed_head
from envelope.sealed import sealed_header
from envelope.values import (
    MESSAGE_ID_RE,
    SITE_ID_RE,
    Priority,
    check_doc_class,
    check_dossier,
    check_message_id,
    check_site_id,
    format_time,
    new_message_id,
)
from gateway.bridges.http.common import ApiError, integrator, json_response, state
from gateway.bridges.http.params import ParamError, parse_time
from gateway.bridges.http.staging import Budget, Staged, Stager, stage
from gateway.bridges.http.status import ENVELOPE_MEDIA_TYPE, receipts_href, status_document
from gateway.bridges.integrators import (
    IDEMPOTENCY_TTL,
    IntegratorError,
    check_idempotency_key,
    fingerprint,
)
from gateway.relay.circular_status import message_status
from gateway.relay.envelope_io import InputPart
from gateway.relay.key_wait import keyless_destinations
from gateway.relay.outbox import RESERVED_CLASS, send_files
from gateway.relay.submit import ExpiresRefused, check_expires, longest_lifetime
from gateway.site.context import SiteContext
from gateway.store.base import Destination, Submission
from routing.directory import DirectoryError

METADATA_KEYS = {"to", "class", "subject", "priority", "dossier", "expires", "in_reply_to"}


@dataclass(frozen=True)
class Metadata:
    to: tuple[str, ...]
    doc_class: str
    subject: str | None
    priority: Priority
    dossier: str | None
    expires: datetime | None
    in_reply_to: str | None

    def normalised(self) -> dict[str, Any]:
        return {
            "to": list(self.to),
            "class": self.doc_class,
            "subject": self.subject,
            "priority": self.priority.value,
            "dossier": self.dossier,
            "expires": None if self.expires is None else format_time(self.expires),
            "in_reply_to": self.in_reply_to,
        }


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_metadata", message)


def _optional_str(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value or None


def check_metadata(meta: dict[str, Any], ctx: SiteContext, now: datetime) -> Metadata:
    """Validate submission metadata. Raises ApiError (422)."""
    unknown = sorted(set(meta) - METADATA_KEYS)
    if unknown:
        raise _invalid(f"unknown metadata {', '.join(unknown)}")
    to = meta.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(s, str) for s in to):
        raise _invalid("to must be a non-empty list of site ids")
    if len(to) > MAX_DESTINATIONS:  # checked before any lookup, duplicates included
        raise _invalid(f"to names more than {MAX_DESTINATIONS} sites")
    missing = []
    for site in to:
        try:
            keyless_destinations(ctx.directory, [check_site_id(site)])
        except (EnvelopeError, DirectoryError):
            missing.append(site)
    if missing:
        raise ApiError(
            422, "unknown_site", f"not sites of the directory in force: {', '.join(missing)}"
        )
    priority = meta.get("priority") or "routine"
    if priority not in {p.value for p in Priority}:
        raise _invalid("priority must be one of flash, immediate, priority, routine")
    expires = _expires(_optional_str(meta, "expires"), now, longest_lifetime(ctx))
    try:
        doc_class = check_doc_class(_optional_str(meta, "class") or "document")
        dossier = _optional_str(meta, "dossier")
        in_reply_to = _optional_str(meta, "in_reply_to")
        if dossier is not None:
            check_dossier(dossier)
        if in_reply_to is not None:
            check_message_id(in_reply_to)
    except EnvelopeError as exc:
        raise _invalid(str(exc)) from None
    if doc_class == RESERVED_CLASS:  # only the gateway seals receipts (review 11, F1)
        raise _invalid(f"class {RESERVED_CLASS!r} is reserved to the receipts the gateway seals")
    return Metadata(
        to=tuple(dict.fromkeys(to)),
        doc_class=doc_class,
        subject=_optional_str(meta, "subject"),
        priority=Priority(priority),
        dossier=dossier,
        expires=expires,
        in_reply_to=in_reply_to,
    )


def _expires(value: str | None, now: datetime, longest: timedelta) -> datetime | None:
    if value is None:
        return None
    try:
        moment = parse_time(value, "expires")
        check_expires(moment, now, longest)
    except (ParamError, ExpiresRefused) as exc:
        raise _invalid(str(exc)) from None
    return moment


def _check_sealable(meta: Metadata, staged: Staged) -> None:
    parts = tuple(PartInfo(p.name, p.media_type, p.size) for p in staged.parts)
    try:
        sealed_header(parts, meta.subject, staged.originator)
    except EnvelopeError as exc:
        raise _invalid(str(exc)) from None


async def submit_document(request: web.Request) -> web.Response:
    api, who = state(request), integrator(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        try:
            check_idempotency_key(key)
        except IntegratorError as exc:
            raise ApiError(400, "invalid_idempotency_key", str(exc)) from None
    # The folder and its files are made and removed in worker threads: a request of
    # many parts must not hold the event loop in file-system calls.
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=api.workdir, prefix="req-"))
    try:
        staged = await stage(request, Stager(folder, Budget(api.max_body_bytes)))
        now = datetime.now(UTC)
        meta = check_metadata(staged.metadata, api.ctx, now)
        if not staged.parts:
            raise ApiError(422, "no_documents", "the submission has no document part")
        _check_sealable(meta, staged)
        print_ = fingerprint(
            {**meta.normalised(), "originator": staged.originator},
            [(p.name, p.media_type, p.sha256) for p in staged.parts],
        )
        fresh = Submission(new_message_id(now, secrets.token_bytes(10)), who.name, key, print_, now)
        kept = await api.ctx.store.submission_reserve(fresh, forget_before=now - IDEMPOTENCY_TTL)
        if kept.fingerprint != print_:
            raise ApiError(
                409, "idempotency_conflict", "this Idempotency-Key was used for another request"
            )
        replayed = kept.message_id != fresh.message_id
        waiting: list[str] = []
        if not (replayed and await api.ctx.store.get_envelope(kept.message_id) is not None):
            # The directory send_files reads next, with no await in between.
            waiting = keyless_destinations(api.ctx.directory, meta.to)
            await send_files(
                api.ctx,
                meta.to,
                [InputPart(p.path, p.name, p.media_type) for p in staged.parts],
                now=now,
                workdir=folder,
                subject=meta.subject,
                originator=staged.originator,
                priority=meta.priority,
                doc_class=meta.doc_class,
                dossier=meta.dossier,
                expires=meta.expires,
                in_reply_to=meta.in_reply_to,
                message_id=kept.message_id,
            )
    finally:
        # Shielded: if the handler is cancelled, the removal still runs to its end.
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True))
    location = f"/v1/documents/{kept.message_id}"
    body: dict[str, Any] = {"id": kept.message_id, "status": "queued", "location": location}
    if waiting:
        body["waiting_for_key"] = waiting
    extra = {"Idempotent-Replayed": "true"} if replayed else {}
    return json_response(body, 202, Location=location, **extra)


async def _own_message(request: web.Request) -> str:
    mid = request.match_info["id"]
    sub = None
    if MESSAGE_ID_RE.fullmatch(mid):
        sub = await state(request).ctx.store.submission(mid)
    if sub is None or sub.integrator != integrator(request).name:
        raise ApiError(404, "not_found", f"no document {mid} submitted by this integrator")
    return mid


async def document_status(request: web.Request) -> web.Response:
    mid = await _own_message(request)
    store = state(request).ctx.store
    record = await store.get_envelope(mid)
    ms = await message_status(store, mid)
    if ms is None:
        raise ApiError(404, "not_found", f"document {mid} was never queued")
    history = await store.history(mid)
    latest: dict[str, str] = {}
    for t in history:
        if t.peer is not None:
            latest[t.peer] = t.state
    sizes = {d.site: d.receipt_size for d in ms.destinations if isinstance(d, Destination)}
    legacy = 0
    if not ms.destinations:
        legacy_receipt = await store.receipt(mid)
        legacy = len(legacy_receipt) if legacy_receipt is not None else 0
    body = status_document(
        ms,
        history=[
            {"at": format_time(t.at), "peer": t.peer, "state": t.state, "reason": t.reason}
            for t in history
        ],
        history_hops=latest,
        receipt_sizes=sizes,
        legacy_receipt_size=legacy,
    )
    if record is not None:
        r = parse_framed_head(record.data)[0].head.routing
        body.update(
            to=list(r.destinations),
            created=format_time(r.created),
            expires=format_time(r.expires),
            priority=r.priority.value,
            **{"class": r.doc_class},
            dossier=r.dossier,
            in_reply_to=r.in_reply_to,
        )
    return json_response(body)


def _attachment(data: bytes, filename: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=ENVELOPE_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def document_receipt(request: web.Request) -> web.Response:
    """The one receipt of a single-destination document; 409 for a circular (one
    receipt per destination: /v1/documents/{id}/receipts/{site})."""
    mid = await _own_message(request)
    store = state(request).ctx.store
    dests = await store.destinations(mid)
    if len(dests) > 1:
        raise ApiError(
            409,
            "circular",
            f"{mid} has {len(dests)} destinations, one receipt per destination:"
            f" {receipts_href(mid, '{site}')}",
        )
    if dests:
        receipt = await store.destination_receipt(mid, dests[0].site)
    else:
        receipt = await store.receipt(mid)
    if receipt is None:
        raise ApiError(404, "not_found", f"no receipt for {mid} yet")
    return _attachment(receipt, f"{mid}.receipt.valise")


async def document_destination_receipt(request: web.Request) -> web.Response:
    """The receipt of one destination of a document (``/receipts/{site}``): 404 for a
    site that is not one of its destinations, malformed or not, and before it came."""
    mid = await _own_message(request)  # first: another integrator's document is 404
    site = request.match_info["site"]
    store = state(request).ctx.store
    if not SITE_ID_RE.fullmatch(site):
        # Not echoed: the segment is the client's, of any length and content.
        raise ApiError(404, "not_found", f"not a site id, so no destination of {mid}")
    dests = {d.site for d in await store.destinations(mid)}
    if not dests:
        record = await store.get_envelope(mid)
        dests = set(record.destinations) if record is not None else set()
    if site not in dests:
        raise ApiError(404, "not_found", f"{site} is not a destination of {mid}")
    receipt = await store.destination_receipt(mid, site)
    if receipt is None and len(dests) == 1:
        receipt = await store.receipt(mid)  # recorded without destination rows
    if receipt is None:
        raise ApiError(404, "not_found", f"no receipt from {site} for {mid} here yet")
    return _attachment(receipt, f"{mid}.receipt-{site}.valise")
