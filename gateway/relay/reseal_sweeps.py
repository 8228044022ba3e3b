"""What the key watcher (gateway/relay/key_watch.py) re-seals and releases by itself,
whenever the directory changes: the rules are gateway/relay/reseal.py's.

- :func:`reseal_revoked`: what this site sealed to an encryption key no longer
  accepted, once every destination's replacement is published;
- :func:`resign_refused`: what it signed with a signing key of its own no longer
  accepted, once the new one is published;
- :func:`release_fresh`: what is held here for a revoked key although the copy stored
  now is sealed to keys in force.

A message an operator holds (:func:`operator_held`) is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.relay.reseal import (
    HOLD_REASON,
    OPERATOR_HOLD,
    REQUEUE,
    ResealResult,
    candidates,
    has_active_key,
    open_destinations,
    reseal_message,
    signing_key_published,
    stale_signature,
    stale_stanzas,
    stored_head,
)
from gateway.site.context import SiteContext
from gateway.store.base import OutState, QueueEntry


async def release_fresh(ctx: SiteContext, now: datetime) -> list[str]:
    """Release what is held here for a revoked key although the copy stored now is
    sealed to keys in force (a re-sealed copy taken in its place while a try of the
    old one was refused). Returns the message ids released."""
    released: list[str] = []
    for entry in await ctx.store.queue(state=OutState.HELD.value):
        if not entry.last_reason.startswith(HOLD_REASON) or entry.message_id in released:
            continue
        parsed = await stored_head(ctx, entry.message_id)
        if parsed is None:
            continue
        wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
        if stale_stanzas(ctx.directory, wraps):
            continue
        reason = "its copy here is sealed to keys in force"
        if await ctx.store.release(entry.message_id, now=now, reason=reason):
            released.append(entry.message_id)
    return released


# How a peer's refusal of an origin signature reads in a failed delivery's reason
# (gateway/relay/hop.py check_envelope, as gateway/relay/courier.py records it).
SIGNATURE_REFUSED = "origin signature refused"


async def resign_refused(ctx: SiteContext, *, now: datetime, every: bool) -> list[ResealResult]:
    """Sign again, with our current signing key once it is published, what this site
    signed with a key of its own no longer accepted: the messages a peer refused for
    that (failed), and with ``every`` each one still to send as well. One also sealed
    to a key no longer accepted is sealed again too (re-sealing signs anew), once every
    destination has an active encryption key: failed for its signature, it is no
    :func:`reseal_revoked` candidate (its destination is closed), and was left failed
    (review 10c F3). For the key watcher (gateway/relay/key_watch.py)."""
    if not signing_key_published(ctx):
        return []
    pending = (*REQUEUE, OutState.QUEUED.value)
    ids: list[str] = []
    entries = await ctx.store.queue()
    kept = operator_held(entries)
    for entry in entries:
        if entry.origin != ctx.here or entry.message_id in ids or entry.message_id in kept:
            continue
        refused = entry.state == OutState.FAILED.value and SIGNATURE_REFUSED in (
            entry.last_reason or ""
        )
        if refused or (every and entry.state in pending):
            ids.append(entry.message_id)
    results: list[ResealResult] = []
    for mid in ids:
        parsed = await stored_head(ctx, mid)
        if parsed is None:
            continue
        wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
        if stale_signature(ctx, parsed) is None:
            continue
        if stale_stanzas(ctx.directory, wraps) and not all(
            has_active_key(ctx.directory, d) for d in parsed.head.routing.destinations
        ):
            continue  # a destination's new key is not published yet: a later round
        results.append(await reseal_message(ctx, mid, now=now))
    return results


async def reseal_revoked(ctx: SiteContext, *, now: datetime) -> list[ResealResult]:
    """Seal again, to the keys in force, what this site sealed to an encryption key the
    directory no longer accepts (revoked, retired) and is not yet delivered, once every
    destination has an active encryption key in our directory (its replacement is
    published): what ``valise queue reseal --all`` does, without waiting for the
    operator. A message whose destination has no key yet waits for a later directory.
    For the key watcher (gateway/relay/key_watch.py), whenever the directory changes. A
    message an operator holds is left alone."""
    results: list[ResealResult] = []
    kept = operator_held(await ctx.store.queue(state=OutState.HELD.value))
    for mid in await candidates(ctx):
        if mid in kept:
            continue
        parsed = await stored_head(ctx, mid)
        if parsed is None:
            continue
        live = await open_destinations(ctx, mid)
        wraps = [(s.site, s.key_id) for s in parsed.head.recipients]
        if not stale_stanzas(ctx.directory, [w for w in wraps if live is None or w[0] in live]):
            continue  # only a stale signature of ours: resign_refused's
        if not all(has_active_key(ctx.directory, d) for d in parsed.head.routing.destinations):
            continue
        results.append(await reseal_message(ctx, mid, now=now))
    return results


def operator_held(entries: Sequence[QueueEntry]) -> set[str]:
    """The ids of messages with a delivery an operator put on hold."""
    return {
        q.message_id
        for q in entries
        if q.state == OutState.HELD.value and q.last_reason.startswith(OPERATOR_HOLD)
    }
