"""``valise queue reseal``: mail sealed to a revoked key, sealed again to the new one.

Rules:
- When the directory shows a destination's encryption key revoked (or retired),
  every site holding an undelivered envelope sealed to it puts it on hold
  (gateway/key_watch.py, reason ``HOLD_REASON``): it would not open, or would open
  with a key that is no longer safe.
- Only the origin can re-seal: it kept the content key wrapped to its own key (the
  escrow, envelope/reseal.py). Re-sealing writes a new head (new stanzas, new origin
  signature) over the same ciphertext, under the same message id, in place of the
  stored copy, and sends it again: its held, deferred or already-forwarded deliveries
  go back to queued.
- A relay (HQ) that holds the old copy for that reason takes the re-sealed one in its
  place when it arrives (gateway/channel.py), and sends it on; anywhere else a copy
  with a known id is a duplicate, as always.
- A copy with a known id but other bytes is taken, or even kept as a duplicate, only
  if it is a re-seal of the stored one: the same routing header and manifest, wrapped
  to exactly the destinations (envelope/replacement.py), its origin signature already
  verified under a key of that origin usable now (gateway/hop.py). Anything else
  raises ReplacementRefused: a co-recipient or any other site reusing the id is a
  forgery attempt, refused and logged. The stored copy is replaced only if it is still
  the one compared (``expected_digest``), and only by a copy sealed to keys in force.
- The origin's own re-seal passes the same check before it replaces its copy.
- An envelope with a receipt is never re-sealed (it was delivered), nor one with no
  escrow (sealed before escrows were kept, or not sealed here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from envelope.errors import DecryptionFailed, EnvelopeError
from envelope.head import ParsedHead
from envelope.open import parse_framed_head
from envelope.replacement import ReplacementRefused, check_replacement
from envelope.reseal import Resealed, reseal
from envelope.seal import Recipient
from gateway.site import SiteContext
from gateway.store.base import EnvelopeRecord, OutState
from routing.directory import USABLE, Directory, DirectoryError

HOLD_REASON = "sealed to revoked encryption key"
# Deliveries of a re-sealed envelope that are sent again.
REQUEUE = (OutState.HELD.value, OutState.DEFERRED.value, OutState.FORWARDED.value)


@dataclass(frozen=True)
class ResealResult:
    message_id: str
    done: bool
    detail: str


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


async def candidates(ctx: SiteContext) -> list[str]:
    """Messages sealed here, not yet delivered, with a wrap to a key no longer accepted."""
    ids: list[str] = []
    for entry in await ctx.store.queue():
        if entry.origin != ctx.here or entry.state not in (*REQUEUE, OutState.QUEUED.value):
            continue
        if entry.message_id in ids:
            continue
        record = await ctx.store.get_envelope(entry.message_id)
        if record is None:
            continue
        try:
            parsed, _ = parse_framed_head(record.data)
        except EnvelopeError:
            continue
        wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
        if stale_stanzas(ctx.directory, wraps):
            ids.append(entry.message_id)
    return ids


async def reseal_message(
    ctx: SiteContext, message_id: str, *, now: datetime, dry_run: bool = False
) -> ResealResult:
    """Re-seal one message this site sent to the destinations' keys in force now."""
    record = await ctx.store.get_envelope(message_id)
    if record is None:
        return ResealResult(message_id, False, "no such message here")
    if record.origin != ctx.here:
        return ResealResult(message_id, False, f"sealed by {record.origin}; only it can re-seal")
    if await ctx.store.receipt(message_id) is not None:
        return ResealResult(message_id, False, "delivered (a receipt is held): nothing to do")
    escrow = await ctx.store.escrow(message_id)
    if escrow is None:
        return ResealResult(message_id, False, "no escrowed content key: send it again")
    parsed, offset = parse_framed_head(record.data)
    stale = stale_stanzas(ctx.directory, [(s.site, s.key_id) for s in parsed.head.recipients])
    if not stale:
        return ResealResult(message_id, False, "sealed to keys in force: nothing to do")
    try:
        recipients = [
            Recipient(d, ctx.directory.site(d).active_encryption_key())
            for d in parsed.head.routing.destinations
        ]
    except DirectoryError as exc:
        return ResealResult(message_id, False, str(exc))
    if dry_run:
        return ResealResult(message_id, False, f"would re-seal (stale: {', '.join(stale)})")
    new = _reseal(ctx, record.data, parsed, offset, escrow, recipients)
    if new is None:
        return ResealResult(message_id, False, "the escrow opens with none of our keys")
    try:
        check_replacement(parsed.head, parse_framed_head(new.data)[0].head)
    except ReplacementRefused as exc:  # our own bug: never replace with such a copy
        return ResealResult(message_id, False, f"re-sealed copy refused: {exc}")
    reason = f"resealed: {', '.join(stale)} replaced"
    count = await ctx.store.replace_sealed(
        message_id,
        data=new.data,
        digest=new.digest,
        chain=new.signature,
        hop_ack=None,
        expected_digest=record.digest,
        requeue=REQUEUE,
        held_for=None,
        now=now,
        reason=reason,
    )
    if not count:
        return ResealResult(message_id, False, "nothing left to send (delivered meanwhile?)")
    ctx.notify([d.peer for d in await ctx.store.queue() if d.message_id == message_id])
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
    count = await ctx.store.replace_sealed(
        record.message_id,
        data=record.data,
        digest=record.digest,
        chain=record.chain or b"",
        hop_ack=hop_ack,
        expected_digest=held.digest,
        requeue=(OutState.HELD.value,),
        held_for=HOLD_REASON,
        now=now,
        reason="resealed by its origin",
    )
    return count > 0
