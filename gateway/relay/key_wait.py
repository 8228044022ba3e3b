"""Sending to a site that has no active encryption key yet: queue now, seal later.

Between HQ's revocation of a site's encryption key and the publication of its
replacement, the directory lists no active encryption key for that site (a
*revocation window*). A document sent to it then is queued, not refused.

Rules:
- Only a site in force (listed and active in the directory) may be waited for; an
  unknown or disabled site is refused as before (a usage error).
- The document is sealed at once, as any other, by :func:`gateway.relay.outbox`: to the
  active keys of the destinations that have one, with the origin's escrow (the
  content key wrapped to this site's own encryption key, envelope/reseal.py). A
  destination without a key gets a stanza wrapped to a throwaway key generated for
  this envelope and dropped at once (:func:`throwaway_key`): nobody can open it, and
  no stanza is ever made to a revoked or retired key. So nothing but ciphertext, and
  the escrow only this site can open, is ever at rest.
- Every delivery of that envelope is put on hold in the same transaction that queues
  it, with the reason ``waiting for an encryption key of SITE`` (:func:`hold_reason`):
  it never leaves this site as it is. A peer would refuse it anyway: its stanza is to
  no key of that site (gateway/relay/hop.py check_stanzas).
- The running site re-seals it as soon as its directory (the signed one it verified)
  lists an active encryption key for every destination (:func:`seal_waiting`, every
  key round of gateway/relay/key_watch.py, and at once after a directory change): the same
  message id, routing header and ciphertext, new stanzas to those keys and a new
  origin signature (gateway/relay/reseal.py reseal_message, which takes the keys from
  ``ctx.directory`` and nowhere else); its held deliveries go back to the queue.
  Until then it waits, held; it expires like any message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from crypto.keys import DecryptionKey, EncryptionKey
from gateway.relay.reseal import ResealResult, reseal_message
from gateway.runtime import logjson
from gateway.site.context import SiteContext
from gateway.store.base import OutState, StoreError
from routing.directory import Directory, DirectoryError

log = logging.getLogger("valise.keys")

WAITING_FOR_KEY = "waiting for an encryption key of"


def hold_reason(sites: Sequence[str]) -> str:
    """The hold reason of an envelope waiting for ``sites``' keys."""
    return f"{WAITING_FOR_KEY} {', '.join(sites)}"


def keyless_destinations(directory: Directory, to: Sequence[str]) -> list[str]:
    """The sites of ``to`` that are in force but have no active encryption key now, in
    order. Raises DirectoryError for a site not in ``directory``, or disabled there
    with no key (nothing can be sent to it, now or later)."""
    waiting: list[str] = []
    for site in to:
        entry = directory.site(site)
        try:
            entry.active_encryption_key()
        except DirectoryError:
            if not directory.knows(site):
                raise DirectoryError(
                    f"{site} is disabled and has no active encryption key"
                ) from None
            if site not in waiting:
                waiting.append(site)
    return waiting


def throwaway_key() -> EncryptionKey:
    """A public key whose private half is dropped here: a stanza wrapped to it opens for
    no one. It stands in for a destination's key until the directory has one."""
    return DecryptionKey.generate().public


def waiting_notice(sites: Sequence[str]) -> str:
    """What a sender is told when its document waits."""
    return (
        f"no active encryption key for {', '.join(sites)} yet; the document is queued"
        " and will be sealed when one is published"
    )


async def waiting_messages(ctx: SiteContext) -> list[str]:
    """Message ids sealed here whose deliveries are held waiting for a key."""
    ids: list[str] = []
    for entry in await ctx.store.queue(state=OutState.HELD.value):
        if (
            entry.origin == ctx.here
            and entry.last_reason.startswith(WAITING_FOR_KEY)
            and entry.message_id not in ids
        ):
            ids.append(entry.message_id)
    return ids


async def seal_waiting(ctx: SiteContext, *, now: datetime) -> list[ResealResult]:
    """Re-seal every message held waiting for a key whose destinations all have an
    active encryption key in ``ctx.directory`` now; the others keep waiting. For the
    key watcher (gateway/relay/key_watch.py)."""
    try:
        ids = await waiting_messages(ctx)
    except StoreError as exc:
        logjson.event(log, logging.WARNING, "seal_waiting_failed", reason=str(exc))
        return []
    results: list[ResealResult] = []
    for mid in ids:
        record = await ctx.store.get_envelope(mid)
        if record is None:
            continue
        try:
            if keyless_destinations(ctx.directory, record.destinations):
                continue  # still no key for one of them: keep waiting
        except DirectoryError as exc:  # a destination left the directory meanwhile
            results.append(ResealResult(mid, False, str(exc)))
            continue
        done = await reseal_message(ctx, mid, now=now)
        logjson.event(
            log,
            logging.INFO if done.done else logging.WARNING,
            "sealed_for_new_key" if done.done else "seal_waiting_skipped",
            id=mid,
            detail=done.detail,
        )
        results.append(done)
    return results
