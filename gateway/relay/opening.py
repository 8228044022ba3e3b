"""Opening one envelope at its destination: the document written to DIR/inbox/ID/
atomically and its receipt sealed back to the origin, or a receipt parsed at the
origin. Blocking and side-effect free on the site context, so local delivery
(gateway/relay/local_delivery.py) may run it on a worker thread; the rules are there.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from crypto.keys import VerifyKey
from envelope.errors import EnvelopeError
from envelope.head import ParsedHead
from envelope.model import PartInfo, RoutingHeader, SealedHeader
from envelope.open import open_parsed, parse_framed_head
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
from gateway.relay.submit import route_here, sealed_record
from gateway.site.context import SiteContext, held_key, load_keys
from gateway.site.keystore import KeyNotHeld, KeyStoreError, SiteKeys
from gateway.store.base import (
    EnvelopeRecord,
)
from routing.directory import USABLE, Directory, DirectoryError, SiteEntry


@dataclass
class Opened:
    """One item of a batch after the worker thread: a document written to the inbox
    with its receipt sealed, a receipt document that arrived, or an error."""

    record: EnvelopeRecord
    routing: RoutingHeader | None = None
    sealed: SealedHeader | None = None
    folder: Path | None = None
    reply: tuple[EnvelopeRecord, tuple[str, ...]] | None = None  # our receipt, its next hops
    receipt: Receipt | None = None  # a receipt for a message sent from here
    error: Exception | None = None
    waiting: str | None = None  # why its receipt cannot be sealed yet (it stays received)
    # The key ring loaded again to open it (a key rotated in by another process): the
    # loop adopts it (SiteContext.adopt_keys); a worker thread never replaces the keys.
    loaded_keys: SiteKeys | None = None


def seal_reply(
    ctx: SiteContext, directory: Directory, r: RoutingHeader, digest: bytes, now: datetime
) -> tuple[EnvelopeRecord, tuple[str, ...]]:
    """The signed receipt of the envelope (routing ``r``, ``digest``) back to its origin,
    as the record to queue and its next hops."""
    receipt = write_receipt(Receipt(r.message_id, digest, ctx.here, now))
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
        recipients=[Recipient(r.origin, directory.site(r.origin).active_encryption_key())],
        sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(receipt)),)),
    )
    data = seal_bytes(sealing, [receipt])
    next_hops, _ = route_here(routing, here=ctx.here, hub=directory.hub)
    return sealed_record(sealing, data, escrow_to=ctx.keys.decryption.public), next_hops


def open_one(
    ctx: SiteContext,
    directory: Directory,
    record: EnvelopeRecord,
    head: tuple[ParsedHead, int] | None,
    now: datetime,
) -> Opened:
    """Open one envelope (``head``: its head, parsed already, if known); write a document
    to the inbox and seal its receipt. Blocking; reads ``ctx`` and changes nothing in it
    (it may run on a worker thread)."""
    loaded: list[SiteKeys] = []
    opened = _open_one(ctx, directory, record, head, now, loaded)
    return replace(opened, loaded_keys=loaded[-1]) if loaded else opened


def _open_one(
    ctx: SiteContext,
    directory: Directory,
    record: EnvelopeRecord,
    head: tuple[ParsedHead, int] | None,
    now: datetime,
    loaded: list[SiteKeys],
) -> Opened:
    try:
        parsed, offset = head if head is not None else parse_framed_head(record.data)
        origin = directory.site(record.origin)
        signer = origin.verify_keys().get(parsed.head.signature_key_id)
        if signer is None:
            # Revoked or retired since this copy was taken: the hop verified it then with
            # a key our directory accepted (relay/hop.py), so it is checked with that key
            # while the directory still lists it. Failing it would lose the message: the
            # origin's re-signed copy would be a duplicate here (review 10c F2; the same
            # window as our own encryption key's below).
            signer = _listed_signing_key(origin, parsed.head.signature_key_id)
        if signer is None:
            refusal = origin.refusal(parsed.head.signature_key_id)
            raise EnvelopeError(f"origin signature refused: {refusal}")
        key_id = _stanza_key(parsed, ctx.here)
        try:
            key = ctx.keys.decryption_for(key_id)
        except KeyNotHeld:
            # A key rotated in by another process: load the ring again, but only for a
            # key the directory lists as ours and usable (the hop checks refuse stanzas to
            # other sites' keys; this keeps a sender from making us reload, and decrypt a
            # passphrase-protected ring, once per envelope).
            if not _usable_encryption_key(directory, ctx.here, key_id):
                raise
            loaded.append(load_keys(ctx.config)[0])
            key = loaded[-1].decryption_for(key_id)
        except KeyStoreError as unusable:
            # Ours, retired or revoked since this copy was taken here (a copy new here to
            # such a key is refused at the hop: channel.py _opening_here, so the count is
            # bounded): opened with the private file while it is kept, which it is until
            # nothing received needs it (gateway/trust/unopened.py). Failing it would lose
            # the message (its re-sealed copy would be a duplicate here).
            try:
                key = held_key(ctx.config, key_id)
            except KeyStoreError:
                raise unusable from None
        sealed, parts = open_parsed(
            record.data, parsed, offset, sender=signer, site=ctx.here, key=key
        )
        r = parsed.head.routing
        if r.doc_class == RECEIPT_CLASS:
            return Opened(record, r, sealed, receipt=parse_receipt(parts[0]))
        try:
            reply = seal_reply(ctx, directory, r, parsed.digest, now)
        except DirectoryError as exc:
            # The origin has no usable encryption key in our directory (revoked, its
            # replacement not yet published): the document waits, unacknowledged, and
            # is opened again once the directory changes (LocalDelivery.await_key).
            return Opened(record, r, sealed, waiting=str(exc))
        folder = ctx.config.directory / "inbox" / record.message_id
        write_inbox(folder, sealed, parts)
        return Opened(record, r, sealed, folder, reply=reply)
    except Exception as exc:  # one bad envelope must not stop the batch
        return Opened(record, error=exc)


def _listed_signing_key(origin: SiteEntry, key_id: str) -> VerifyKey | None:
    """The origin's signing key ``key_id`` in any state the directory lists it with
    (for a copy taken before it became unusable: _open_one)."""
    return next((k for k, _ in origin.signing if k.key_id == key_id), None)


def _usable_encryption_key(directory: Directory, here: str, key_id: str) -> bool:
    kind, state = directory.site(here).states().get(key_id, ("", None))
    return kind == "encryption" and state in USABLE


def _stanza_key(parsed: ParsedHead, site: str) -> str:
    """The key id of the (first) recipient stanza for ``site``."""
    for stanza in parsed.head.recipients:
        if stanza.site == site:
            return stanza.key_id
    raise EnvelopeError(f"no recipient stanza for {site}")


def write_inbox(folder: Path, sealed: SealedHeader, parts: list[bytes]) -> None:
    """Write the opened parts atomically: a staging folder renamed into place."""
    if folder.exists():
        return  # already delivered before a crash; exactly once
    from gateway.relay.envelope_io import _unique_names, safe_name

    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    folder.parent.mkdir(mode=0o700, exist_ok=True)  # DIR/inbox: the owner's alone
    staging.mkdir(mode=0o700)
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
