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
  (gateway/relay/opening.py open_one: the signer's key from the directory, this
  site's decryption key) and put through the v11 check
  (gateway/relay/circular.py check_origin_receipt): its signed document names the message its
  plain head answers, the site that signed it, a destination of that message, and the
  digest of an envelope sent as it (the stored copy's or a superseded one's). Receipts
  go in the order the old gateway acknowledged them: the first one from a site stands,
  a later one is refused as a second receipt. Only a receipt envelope is opened (never
  a document: nothing is written to the inbox nor sealed here).
- Kept receipts are old, and their keys may have been rotated since v10 checked them
  (review 11d F1). The signer's signing key is taken from the directory if it is usable
  or listed ``retired`` (v10 acknowledged the receipt before it was retired); a key
  ``revoked``, or no longer listed at all, still refuses it.
- A receipt sealed to an encryption key of this site retired since (the ring or the
  directory says ``retired``, neither says ``revoked``; its private file may be gone)
  cannot be re-opened: its document cannot be read. Its head must still verify (the
  signer's signature over the head, which names the digest of every segment, and
  those digests), answer the row's message, be signed by that destination, and pass
  the checks that need no document (a message sent from here, a destination of it,
  the first receipt from that site). Then the row closes on v10's verdict, as
  delivered, under the reason ``KEPT_UNOPENED`` (history and status say it was not
  re-verified), ``receipt_for`` unknown (status reads "receipts relayed", not
  "verified"); ``delivered`` (and ``completed``) are emitted as for a verified one.
- A verified receipt closes its row as any receipt does (history ``delivered``, its hop
  delivered when none through it is left open, the message completed when none is
  open), with ``receipt_for`` the digest it names and ``receipt_at`` when the old
  gateway acknowledged it; ``delivered`` (and ``completed``) are emitted for it then.
  v10 emitted one message-level ``delivered`` for the first receipt only, whose row the
  migration closes without an event: nothing is emitted twice for a destination.
- A refused receipt, or one that cannot be opened otherwise, changes no row; its own
  history takes ``acked`` ``receipt refused at the v11 re-check: REASON``. A waiting row
  none of whose receipts verified stays open, its reason ``receipt kept before v11 not
  confirmed: REASON``; from then on expiry treats it as any open row.
- Everything is settled in one store transaction, so a start that dies before the
  commit re-checks everything at the next one; with no waiting row, this is one read.
- The events are durable (review 11d F2): before the commit, the rows about to close
  are written to a journal in the site folder (gateway/relay/kept_journal.py), removed
  once every event was emitted; a start that finds it emits, first, the events of its
  rows the store shows delivered by a receipt. At least once: an event emitted just before
  the stop may be emitted again (a webhook receiver may see it twice).
- Only a store error, or a journal that cannot be written, raises (and stops the
  start); no receipt's content, nor a journal's, can.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from crypto.keys import DecryptionKey, VerifyKey
from envelope.errors import EnvelopeError, FramingError, SchemaError
from envelope.head import ParsedHead
from envelope.model import RoutingHeader
from envelope.open import check_digest, open_parsed, parse_framed_head, verify_origin
from envelope.receipt import RECEIPT_CLASS, Receipt, parse_receipt
from gateway.relay import kept_journal
from gateway.relay.circular import ReceiptRefused, check_origin_receipt
from gateway.relay.circular_status import emit_completed
from gateway.relay.opening import Opened
from gateway.runtime import logjson
from gateway.runtime.events import Event, EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext, load_keys
from gateway.site.keystore import KeyNotHeld, KeyStoreError, SiteKeys
from gateway.store.base import EnvelopeRecord, KeptReceipt, ReceiptOutcome, ReceiptRecord
from routing.directory import USABLE, KeyState, SiteEntry

log = logging.getLogger("valise.delivery")
REFUSED = "receipt refused at the v11 re-check: {}"
UNCONFIRMED = "receipt kept before v11 not confirmed: {}"
NOT_FOUND = "its receipt envelope is no longer kept here"
# The reason of a row closed on v10's verdict (its receipt sealed to a key retired since).
KEPT_UNOPENED = (
    "receipt kept before v11: v10's check stands, it cannot be re-opened"
    " (encryption key {} retired)"
)


@dataclass(frozen=True)
class Rechecked:
    """What the re-check did: rows closed (``delivered``; ``unopened``: those of them
    closed on v10's verdict, with their reason), rows left open (with why), receipts
    refused, and the rows an earlier start's journal had events emitted for again."""

    delivered: tuple[tuple[str, str], ...] = ()
    unconfirmed: tuple[tuple[str, str, str], ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    unopened: tuple[tuple[str, str, str], ...] = ()
    replayed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Unopened:
    """A kept receipt whose head verified, sealed to an encryption key of this site
    retired since (``key_id``): its document cannot be read."""

    record: EnvelopeRecord
    routing: RoutingHeader
    key_id: str


async def recheck_kept_receipts(
    ctx: SiteContext,
    events: EventBus,
    metrics: Metrics | None = None,
    *,
    now: datetime | None = None,
) -> Rechecked:
    """Emit the events an earlier start's journal holds, then re-check the kept receipts
    of the rows the v11 migration left waiting and settle them (see the module rules).
    Raises StoreError, or OSError if the journal cannot be written."""
    journal = kept_journal.path_of(ctx.config.directory)
    async with kept_journal.held(journal):
        return await _recheck(ctx, events, metrics, journal, now or datetime.now(UTC))


async def _recheck(
    ctx: SiteContext,
    events: EventBus,
    metrics: Metrics | None,
    journal: Path,
    now: datetime,
) -> Rechecked:
    replayed = await kept_journal.replay(journal, ctx.here, ctx.store, events, now)
    waiting = await ctx.store.kept_receipts_to_recheck()
    if not waiting.rows:
        return Rechecked(replayed=tuple(replayed))
    why: dict[tuple[str, str], str] = {}
    refused: list[tuple[str, str]] = []
    opened: list[tuple[KeptReceipt, Opened | Unopened]] = []
    keys = [ctx.keys]  # the ring loaded again here if need be (ctx is not changed)
    for k in waiting.kept:
        o = await _open(ctx, keys, k)
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
    rows = [(r.message_id, r.site) for r, _ in verified]
    with kept_journal.write(journal, ctx.here, rows) as pending:
        outcomes = await ctx.store.settle_kept_receipts(verified, refused, unconfirmed, now=now)
        for receipt_id, reason in refused:
            logjson.event(
                log, logging.WARNING, "kept_receipt_refused", id=receipt_id, reason=reason
            )
        for m, s, reason in unconfirmed:
            logjson.event(
                log, logging.WARNING, "kept_receipt_unconfirmed", id=m, site=s, reason=reason
            )
        closed = await _report(ctx, events, metrics, verified, outcomes, now, pending)
    unopened = tuple(
        (r.message_id, r.site, r.reason)
        for (r, _), o in zip(verified, outcomes, strict=True)
        if r.receipt_for is None and o.status == "recorded"
    )
    return Rechecked(tuple(closed), tuple(unconfirmed), tuple(refused), unopened, tuple(replayed))


async def _open(ctx: SiteContext, keys: list[SiteKeys], k: KeptReceipt) -> Opened | Unopened | str:
    """The kept receipt opened, or checked as far as it can be without the retired key
    it is sealed to, or why not."""
    record = await ctx.store.get_envelope(k.receipt_id)
    if record is None:
        return NOT_FOUND
    try:
        return _open_kept(ctx, keys, record)
    except Exception as exc:  # no receipt's content stops the start
        return f"{type(exc).__name__}: {exc}"


def _open_kept(
    ctx: SiteContext, keys: list[SiteKeys], record: EnvelopeRecord
) -> Opened | Unopened | str:
    """opening.open_one for a receipt kept before v11, with the keys it may have
    been sealed under (see the module rules); ``keys[-1]``: this site's keys, loaded
    again (appended) for a key rotated in since. Raises what opening it raises."""
    parsed, offset = parse_framed_head(record.data)
    r = parsed.head.routing
    if r.doc_class != RECEIPT_CLASS:
        return "not a receipt"
    signer = _signing_key(ctx.directory.site(record.origin), parsed.head.signature_key_id)
    stanzas = _stanza_keys(parsed, ctx.here)
    key = None
    first: KeyStoreError | None = None
    for key_id in stanzas:  # any stanza a key held and usable now opens (review 11e)
        try:
            key = _held(ctx, keys, key_id)
            break
        except KeyStoreError as exc:
            first = first or exc
    if key is None:
        states = [_retired_here(ctx, keys[-1], k) for k in stanzas]
        if not any(states):
            assert first is not None
            raise first
        return _unopened(record, parsed, offset, signer, stanzas[states.index(True)])
    sealed, parts = open_parsed(record.data, parsed, offset, sender=signer, site=ctx.here, key=key)
    if len(parts) != 1:
        raise SchemaError(f"a receipt envelope has one part, not {len(parts)}")
    return Opened(record, r, sealed, receipt=parse_receipt(parts[0]))


def _signing_key(origin: SiteEntry, key_id: str) -> VerifyKey:
    """The signer's key: usable, or listed ``retired`` (v10 verified a kept receipt
    before its key was retired). Revoked, unknown or no longer listed: refused."""
    key = origin.verify_keys().get(key_id)
    if key is not None:
        return key
    for listed, state in origin.signing:
        if listed.key_id == key_id and state is KeyState.RETIRED:
            return listed
    raise EnvelopeError(f"origin signature refused: {origin.refusal(key_id)}")


def _stanza_keys(parsed: ParsedHead, site: str) -> list[str]:
    """The key ids of the recipient stanzas for ``site``, in order."""
    found = [s.key_id for s in parsed.head.recipients if s.site == site]
    if not found:
        raise EnvelopeError(f"no recipient stanza for {site}")
    return found


def _held(ctx: SiteContext, keys: list[SiteKeys], key_id: str) -> DecryptionKey:
    """This site's private key for ``key_id`` if held and usable now (the ring loaded
    again, appended, for a key the directory lists as ours and usable). Raises
    KeyStoreError."""
    try:
        return keys[-1].decryption_for(key_id)
    except KeyNotHeld:
        kind, state = ctx.directory.site(ctx.here).states().get(key_id, ("", None))
        if kind != "encryption" or state not in USABLE:
            raise
        keys.append(load_keys(ctx.config)[0])
        return keys[-1].decryption_for(key_id)


def _retired_here(ctx: SiteContext, keys: SiteKeys, key_id: str) -> bool:
    """Whether ``key_id`` is an encryption key of this site retired, not revoked: the
    directory lists it retired, or lists it no longer and the ring holds it retired."""
    held = keys.unusable.get(key_id)
    shown = ctx.directory.site(ctx.here).states().get(key_id)
    if held == KeyState.REVOKED.value or (shown is not None and shown[1] is KeyState.REVOKED):
        return False
    if shown is not None:
        return shown == ("encryption", KeyState.RETIRED)
    return held == KeyState.RETIRED.value


def _unopened(
    record: EnvelopeRecord, parsed: ParsedHead, offset: int, signer: VerifyKey, key_id: str
) -> Unopened:
    """The kept receipt checked without its document: the signer's signature over its
    head, and each segment against the digest the head names. Raises EnvelopeError."""
    manifest = parsed.head.manifest
    data = memoryview(record.data)
    if len(data) != offset + manifest.total_length:
        short = len(data) < offset + manifest.total_length
        raise FramingError("truncated envelope" if short else "trailing data")
    if len(manifest.parts) != 1:
        raise SchemaError(f"a receipt envelope has one part, not {len(manifest.parts)}")
    verify_origin(parsed, signer)
    for index, segment in enumerate(manifest.segments):
        piece = data[offset : offset + segment.length]
        check_digest(segment, hashlib.sha256(piece).digest(), f"segment {index}")
        offset += segment.length
    return Unopened(record, parsed.head.routing, key_id)


async def _check(
    ctx: SiteContext,
    opened: list[tuple[KeptReceipt, Opened | Unopened]],
    why: dict[tuple[str, str], str],
    refused: list[tuple[str, str]],
) -> list[tuple[ReceiptRecord, datetime]]:
    """The receipts that pass check_origin_receipt, in order, the first per site
    standing; the others' reasons go to ``why`` (by the row their head answers) and
    ``refused``. An unopened receipt goes through the same checks but the digest's (a
    stand-in document naming the message its head answers and the stored copy's
    digest), and is recorded under KEPT_UNOPENED without the digest it names."""
    ids = {k.answers for k, o in opened if isinstance(o, Unopened)}
    ids |= {o.receipt.message_id for _, o in opened if isinstance(o, Opened) and o.receipt}
    sent = await ctx.store.sent_digests(sorted(ids))
    verified: list[tuple[ReceiptRecord, datetime]] = []
    for k, o in opened:
        if isinstance(o, Unopened):
            original = sent.get(k.answers)
            stored = original.stored if original is not None else bytes(32)
            receipt = Receipt(k.answers, stored, o.record.origin, k.acked_at)
            routing = o.routing
        else:
            assert o.receipt is not None and o.routing is not None
            receipt, routing = o.receipt, o.routing
            original = sent.get(receipt.message_id)
        try:
            check_origin_receipt(
                receipt,
                signer=o.record.origin,
                receipt_digest=o.record.digest,
                sent=original,
                answers=routing.in_reply_to,
            )
            if routing.origin != o.record.origin:
                raise ReceiptRefused(
                    f"its head is signed as {routing.origin}, stored as from {o.record.origin}"
                )
        except ReceiptRefused as exc:
            why.setdefault((k.answers, k.site), str(exc))
            refused.append((k.receipt_id, REFUSED.format(exc)))
            continue
        assert original is not None
        sent[receipt.message_id] = replace(
            original, receipted={receipt.site: o.record.digest, **original.receipted}
        )
        names = None if isinstance(o, Unopened) else receipt.envelope_digest
        record = ReceiptRecord(
            receipt.message_id, receipt.site, o.record.digest, names, o.record.data
        )
        if isinstance(o, Unopened):
            record = replace(record, reason=KEPT_UNOPENED.format(o.key_id))
        verified.append((record, k.acked_at))
    return verified


async def _report(
    ctx: SiteContext,
    events: EventBus,
    metrics: Metrics | None,
    verified: list[tuple[ReceiptRecord, datetime]],
    outcomes: list[ReceiptOutcome],
    now: datetime,
    pending: kept_journal.Pending,
) -> list[tuple[str, str]]:
    """Emit ``delivered`` (and ``completed``) for each receipt recorded now, in order,
    each row marked done in the journal once its events are out."""
    for index, outcome in enumerate(outcomes):
        if outcome.status != "recorded":
            pending.done(index)  # not closed now: nothing to emit, at any start
    closed: list[tuple[str, str]] = []
    for index, ((r, _), outcome) in enumerate(zip(verified, outcomes, strict=True)):
        if outcome.status != "recorded":
            continue
        closed.append((r.message_id, r.site))
        unopened = r.receipt_for is None
        if metrics is not None and not unopened:
            metrics.receipts.inc()
            metrics.destination_receipts.labels(r.site, "verified").inc()
        logjson.event(
            log,
            logging.WARNING if unopened else logging.INFO,
            "kept_receipt_not_reopened" if unopened else "kept_receipt_confirmed",
            id=r.message_id,
            site=r.site,
            receipts=f"{outcome.delivered} of {outcome.total}",
            **({"reason": r.reason} if unopened else {}),
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
        pending.done(index)
    return closed
