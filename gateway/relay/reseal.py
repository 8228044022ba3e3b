"""``valise queue reseal``: mail sealed to a revoked key, sealed again to the new one.

Rules:
- When the directory shows a destination's encryption key revoked (or retired),
  every site holding an undelivered envelope sealed to it puts it on hold
  (gateway/relay/key_watch.py, reason ``HOLD_REASON``): it would not open, or would open
  with a key that is no longer safe.
- Only the origin can re-seal: it kept the content key wrapped to its own key (the
  escrow, envelope/reseal.py). Re-sealing writes a new head (new stanzas, new origin
  signature) over the same ciphertext, under the same message id, in place of the
  stored copy, and sends it again: its held, deferred or already-forwarded deliveries
  go back to queued. The key watcher does this by itself once every destination has
  an active encryption key in the origin's directory (reseal_revoked in
  gateway/relay/reseal_sweeps.py: the replacement is published; nothing is sealed to a
  key that is not), except for a message an operator holds (``OPERATOR_HOLD``);
  ``valise queue reseal`` does it on demand.
- A relay (HQ) that holds the old copy for that reason takes the re-sealed one in its
  place when it arrives (gateway/relay/channel.py), and sends it on; anywhere else a copy
  with a known id is a duplicate, as always.
- A copy with a known id but other bytes is taken, or even kept as a duplicate, only
  if it is a re-seal of the stored one: the same routing header and manifest, wrapped
  to exactly the destinations (envelope/replacement.py), its origin signature already
  verified under a key of that origin usable now (gateway/relay/hop.py). Anything else
  raises ReplacementRefused: a co-recipient or any other site reusing the id is a
  forgery attempt, refused and logged. The stored copy is replaced only if it is still
  the one compared (``expected_digest``), and only by a copy sealed to keys in force.
- The origin's own re-seal passes the same check before it replaces its copy.
- An envelope is re-sealed only for destinations still without a receipt: one whose
  every destination sealed to a stale key has its receipt (or has failed) is not
  re-sealed, and the hub takes the new copy only in place of its held one, so
  delivered destinations are not sent it again. Nor is one with no escrow (sealed
  before escrows were kept, or not sealed here) re-sealed.
- An envelope this site signed with a signing key of its own that the directory now
  shows revoked or retired (a peer refuses it: "origin signature refused") is signed
  again with the current key, once that key is published (usable in our directory):
  same routing header, stanzas (still usable) and manifest, so no escrow is needed
  (envelope/reseal.py resign); its deliveries refused for that reason (failed) are
  sent again with the others. The key watcher does this by itself
  (gateway/relay/key_watch.py); ``valise queue reseal`` does it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from envelope.errors import DecryptionFailed, EnvelopeError
from envelope.head import ParsedHead
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS
from envelope.replacement import ReplacementRefused, check_replacement
from envelope.reseal import Resealed, reseal, resign
from envelope.seal import Recipient
from gateway.relay.circular import open_sites
from gateway.site.context import SiteContext
from gateway.store.base import Destination, DestState, EnvelopeRecord, OutState
from routing.directory import USABLE, Directory, DirectoryError

HOLD_REASON = "sealed to revoked encryption key"
# How an operator's hold reads (gateway/cli/queue.py): the gateway's own re-seals and
# re-signatures leave such a message alone, held (``queue reseal`` by hand does not).
OPERATOR_HOLD = "operator: "
# Deliveries of a re-sealed envelope that are sent again.
REQUEUE = (OutState.HELD.value, OutState.DEFERRED.value, OutState.FORWARDED.value)


@dataclass(frozen=True)
class ResealResult:
    message_id: str
    done: bool
    detail: str
    would: bool = False  # a dry run's answer: this message would be re-sealed or re-signed


def stale_stanzas(directory: Directory, stanzas: Sequence[tuple[str, str]]) -> list[str]:
    """The ``site:key`` of each (site, key id) wrap whose key the directory no longer
    accepts for that site (revoked, retired, or gone). Looked up in that site's own
    entry: what any other entry lists under the same id says nothing about it."""
    stale = []
    for site, key_id in stanzas:
        try:
            kind, state = directory.site(site).states().get(key_id, ("", None))
        except DirectoryError:
            kind, state = "", None
        if kind != "encryption" or state not in USABLE:
            stale.append(f"{site}:{key_id}")
    return stale


def stale_signature(ctx: SiteContext, parsed: ParsedHead) -> str | None:
    """The key id of ours that signed ``parsed`` if the directory no longer accepts it
    (revoked, retired); None if it does, or if it does not list the key at all (newer
    than our copy of the directory: not ours to judge)."""
    key_id = parsed.head.signature_key_id
    if parsed.head.routing.origin != ctx.here:
        return None
    try:
        entry = ctx.directory.site(ctx.here)
    except DirectoryError:
        return None
    if key_id in entry.retired_ids:
        return key_id
    kind, state = entry.states().get(key_id, ("", None))
    return key_id if kind == "signing" and state not in (None, *USABLE) else None


async def stored_head(ctx: SiteContext, message_id: str) -> ParsedHead | None:
    """The parsed head of the envelope stored under ``message_id``; None if there is
    none, or it no longer parses (then there is nothing to re-seal or hold)."""
    record = await ctx.store.get_envelope(message_id)
    if record is None:
        return None
    try:
        return parse_framed_head(record.data)[0]
    except EnvelopeError:
        return None


async def candidates(ctx: SiteContext) -> list[str]:
    """Messages sealed here, not yet delivered, with a wrap to a key no longer accepted,
    or signed with a signing key of ours no longer accepted (even if failed for it)."""
    ids: list[str] = []
    for entry in await ctx.store.queue():
        failed = entry.state == OutState.FAILED.value
        pending = entry.state in (*REQUEUE, OutState.QUEUED.value)
        if entry.origin != ctx.here or not (pending or failed):
            continue
        if entry.message_id in ids:
            continue
        parsed = await stored_head(ctx, entry.message_id)
        if parsed is None:
            continue
        live = await open_destinations(ctx, entry.message_id)
        wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
        wraps = [w for w in wraps if live is None or w[0] in live]
        if stale_signature(ctx, parsed) or (not failed and stale_stanzas(ctx.directory, wraps)):
            ids.append(entry.message_id)
    return ids


async def open_destinations(ctx: SiteContext, message_id: str) -> set[str] | None:
    """The destinations of a message sent from here still without a receipt (nor
    failed); None if it has no destination rows (stored before schema v11): then
    every destination unless a receipt is held."""
    dests = await ctx.store.destinations(message_id)
    if dests:
        return open_sites(dests)
    if await ctx.store.receipt(message_id) is not None:
        return set()
    return None


async def reseal_message(
    ctx: SiteContext,
    message_id: str,
    *,
    now: datetime,
    dry_run: bool = False,
    sent_receipt: bool = False,
) -> ResealResult:
    """Re-seal one message this site sent to the destinations' keys in force now. With
    ``sent_receipt``, a receipt of ours that its next hop acknowledged already (see
    :func:`reseal_receipts`)."""
    record = await ctx.store.get_envelope(message_id)
    if record is None:
        return ResealResult(message_id, False, "no such message here")
    if record.origin != ctx.here:
        return ResealResult(message_id, False, f"sealed by {record.origin}; only it can re-seal")
    if sent_receipt and record.doc_class != RECEIPT_CLASS:
        return ResealResult(message_id, False, "not a receipt")
    dests = await ctx.store.destinations(message_id)
    if dests and all(d.state == DestState.DELIVERED.value for d in dests):
        return ResealResult(
            message_id, False, "delivered (every destination's receipt is held): nothing to do"
        )
    # A receipt of ours (no destination rows) whose hop ack is held is re-sealed whole.
    live = None if sent_receipt else await open_destinations(ctx, message_id)
    if live is not None and not dests:
        return ResealResult(message_id, False, "delivered (a receipt is held): nothing to do")
    parsed, offset = parse_framed_head(record.data)
    wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
    every = stale_stanzas(ctx.directory, wraps)
    unsigned = stale_signature(ctx, parsed)
    if unsigned is not None and live is not None:
        # Signed again, the copy also takes back what failed (_replace): those
        # destinations reopen, so their stale wraps count too, or the copy would go out
        # re-signed to a key no longer accepted and wait at HQ for a re-seal nobody
        # starts (review 10d D1).
        live = {d.site for d in dests if d.state != DestState.DELIVERED.value}
    stale = stale_stanzas(ctx.directory, [w for w in wraps if live is None or w[0] in live])
    if not stale and unsigned is not None:
        return await _resign_message(ctx, record, parsed, offset, unsigned, now, dry_run)
    if not stale and every:
        return ResealResult(message_id, False, _closed_stale(dests, wraps, every))
    if not stale:
        return ResealResult(message_id, False, "sealed to keys in force: nothing to do")
    escrow = await ctx.store.escrow(message_id)
    if escrow is None:
        return ResealResult(message_id, False, "no escrowed content key: send it again")
    if unsigned is not None and not signing_key_published(ctx):
        return ResealResult(message_id, False, _UNPUBLISHED)
    try:
        recipients = [
            Recipient(d, ctx.directory.site(d).active_encryption_key())
            for d in parsed.head.routing.destinations
        ]
    except DirectoryError as exc:
        return ResealResult(message_id, False, str(exc))
    if dry_run:
        return ResealResult(
            message_id, False, f"would re-seal (stale: {', '.join(stale)})", would=True
        )
    new = _reseal(ctx, record.data, parsed, offset, escrow, recipients)
    if new is None:
        return ResealResult(message_id, False, "the escrow opens with none of our keys")
    reason = f"resealed: {', '.join(stale)} replaced"
    if unsigned is not None:
        reason += f"; signed again (signing key {unsigned} no longer accepted)"
    return await _replace(
        ctx, record, new, reason, now, resigned=unsigned is not None, sent_receipt=sent_receipt
    )


def _closed_stale(
    dests: Sequence[Destination], wraps: Sequence[tuple[str, str]], stale: Sequence[str]
) -> str:
    """Why nothing is re-sealed although ``stale`` wraps exist: their destinations are
    closed."""
    delivered = {d.site for d in dests if d.state == DestState.DELIVERED.value}
    sites = {site for site, key_id in wraps if f"{site}:{key_id}" in stale}
    if sites <= delivered:
        return "every destination sealed to a stale key has its receipt: nothing to do"
    return "every destination sealed to a stale key has its receipt or has failed: nothing to do"


_UNPUBLISHED = "our signing key is no longer accepted and its successor is not yet published"
# No delivery to send again: delivered meanwhile, or being tried (then look again).
NOTHING_LEFT = "nothing left to send (delivered meanwhile, or being sent now?)"
# Why a re-seal or re-signature may succeed later without anyone doing anything.
NOT_YET = (_UNPUBLISHED, NOTHING_LEFT)


def signing_key_published(ctx: SiteContext) -> bool:
    try:
        return ctx.keys.signing.key_id in ctx.directory.site(ctx.here).verify_keys()
    except DirectoryError:
        return False


async def _resign_message(
    ctx: SiteContext,
    record: EnvelopeRecord,
    parsed: ParsedHead,
    offset: int,
    unsigned: str,
    now: datetime,
    dry_run: bool,
) -> ResealResult:
    """Sign again, with our current signing key, a message signed with ``unsigned``."""
    mid = record.message_id
    if not signing_key_published(ctx):
        return ResealResult(mid, False, _UNPUBLISHED)
    if dry_run:
        return ResealResult(
            mid, False, f"would re-sign (signing key {unsigned} not accepted)", would=True
        )
    new = resign(record.data, parsed, offset, sender=ctx.keys.signing)
    reason = f"signed again: signing key {unsigned} no longer accepted"
    return await _replace(ctx, record, new, reason, now, resigned=True)


async def _replace(
    ctx: SiteContext,
    record: EnvelopeRecord,
    new: Resealed,
    reason: str,
    now: datetime,
    *,
    resigned: bool,
    sent_receipt: bool = False,
) -> ResealResult:
    """Put ``new`` in place of ``record`` and send it again. A copy signed again also
    takes back the deliveries a peer refused (failed) for the old signature; a receipt
    of ours its next hop acknowledged, that delivery."""
    message_id = record.message_id
    held, arriving = parse_framed_head(record.data)[0], parse_framed_head(new.data)[0]
    try:
        check_replacement(held.head, arriving.head)
    except ReplacementRefused as exc:  # our own bug: never replace with such a copy
        return ResealResult(message_id, False, f"re-sealed copy refused: {exc}")
    requeue = (*REQUEUE, OutState.FAILED.value) if resigned else REQUEUE
    if sent_receipt:
        requeue = (*requeue, OutState.DELIVERED.value)
    count = await ctx.store.replace_sealed(
        message_id,
        data=new.data,
        digest=new.digest,
        chain=new.signature,
        hop_ack=None,
        expected_digest=record.digest,
        requeue=requeue,
        held_for=None,
        now=now,
        reason=reason,
        resend_receipt=sent_receipt,
    )
    if not count:
        return ResealResult(message_id, False, NOTHING_LEFT)
    ctx.queued.ring([d.peer for d in await ctx.store.queue() if d.message_id == message_id])
    return ResealResult(message_id, True, f"{reason}; {count} deliveries queued again")


def _reseal(
    ctx: SiteContext,
    data: bytes,
    parsed: ParsedHead,
    offset: int,
    escrow: bytes,
    recipients: list[Recipient],
) -> Resealed | None:
    """Try the escrow under each of our usable decryption keys (it was made to the key
    active when the envelope was sealed)."""
    keys = {ctx.keys.decryption.key_id: ctx.keys.decryption, **ctx.keys.decryptions}
    for key in keys.values():
        try:
            return reseal(
                data,
                parsed,
                offset,
                escrow=escrow,
                own_key=key,
                sender=ctx.keys.signing,
                recipients=recipients,
            )
        except DecryptionFailed:
            continue
    return None


async def take_resealed_copy(
    ctx: SiteContext,
    record: EnvelopeRecord,
    parsed: ParsedHead,
    *,
    hop_ack: bytes,
    now: datetime,
) -> bool:
    """A copy of a message id already stored here arrived (``record``, checked like any
    envelope, with its head ``parsed``). True if it was taken in place of the stored
    one (a relay holding that one as sealed to a revoked key); False if it is an
    ordinary duplicate. Raises :class:`ReplacementRefused` if it is not a re-seal of
    the stored envelope by its origin (nothing changed: the caller refuses it)."""
    held = await ctx.store.get_envelope(record.message_id)
    if held is None or held.digest == record.digest:
        return False  # the same envelope again (or gone meanwhile): a duplicate
    try:
        held_head, _ = parse_framed_head(held.data)
    except EnvelopeError:
        return False  # not ours to judge: keep what we have, take nothing
    check_replacement(held_head.head, parsed.head)
    wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
    if stale_stanzas(ctx.directory, wraps):
        return False  # an older copy (a retry crossing the re-seal): it would not open
    # Ours no longer goes through (wrapped to a key, or signed with one, no longer
    # accepted): the new copy takes its place wherever it has not gone on yet.
    stale = bool(
        stale_stanzas(ctx.directory, [(s.site, s.key_id) for s in held_head.head.recipients])
    ) or not _signed_usably(ctx, held_head)
    count = await ctx.store.replace_sealed(
        record.message_id,
        data=record.data,
        digest=record.digest,
        chain=record.chain or b"",
        hop_ack=hop_ack,
        expected_digest=held.digest,
        requeue=NOT_GONE_ON if stale else (OutState.HELD.value,),
        held_for=None if stale else HOLD_REASON,
        now=now,
        reason="resealed by its origin",
    )
    return count > 0


# A relay's deliveries of a copy that has not gone on: a better copy is sent instead.
NOT_GONE_ON = (
    OutState.HELD.value,
    OutState.QUEUED.value,
    OutState.DEFERRED.value,
    OutState.SENDING.value,
    OutState.FAILED.value,
)


def _signed_usably(ctx: SiteContext, parsed: ParsedHead) -> bool:
    try:
        keys = ctx.directory.site(parsed.head.routing.origin).verify_keys()
    except DirectoryError:
        return True  # not ours to judge
    return parsed.head.signature_key_id in keys


def stale_for_here(ctx: SiteContext, parsed: ParsedHead) -> str | None:
    """Why an envelope wrapped to us under a key of ours we no longer accept (revoked,
    retired) is refused (it would not open, or with a key no longer safe): a reason
    starting with HOLD_REASON, so that the relay holds it for its origin's re-seal
    (gateway/relay/courier.py). None if its stanza for us is to a key in force."""
    ours = [(s.site, s.key_id) for s in parsed.head.recipients if s.site == ctx.here]
    stale = stale_stanzas(ctx.directory, ours)
    if not stale:
        return None
    key = stale[0].split(":", 1)[1]
    try:
        why = ctx.directory.site(ctx.here).refusal(key)
    except DirectoryError:
        why = "not in our directory"
    return f"{HOLD_REASON} {key} of {ctx.here}: {why}; its origin re-seals it"


def has_active_key(directory: Directory, site: str) -> bool:
    try:
        directory.site(site).active_encryption_key()
    except DirectoryError:
        return False
    return True
