"""Receipts relayed through the hub, sealed again when their destination's key is revoked.

A receipt is done for the site that sealed it once its next hop acknowledged it
("receipts get no receipts": the hop ack is their proof, gateway/relay/courier.py). But
the hub may still hold it: sealed to an encryption key of its destination revoked
before it got there (gateway/relay/key_watch.py holds it), a key whose private file the
destination has deleted. Only the site that sealed it can seal it again (its escrow,
gateway/relay/reseal.py), and it cannot tell whether the hub holds it.

Rules:
- When the directory shows a destination's encryption key revoked, and lists an
  active one for that site, each receipt sealed here, relayed through the hub (its
  next hop is not its destination), not expired, with a stanza to that key, and
  created at most ``WINDOW`` before we first saw the revocation, is sealed again to
  the active key and sent again (same id). The hub takes the new copy in place of a
  held one and sends it on; it acknowledges a copy of one it passed on already, and
  sends nothing (gateway/relay/ack_renewal.py).
- Once per revoked key (again next round if one could not be sealed again yet: our
  own new signing key not published, or the receipt being sent), and for one
  destination at most once per ``EVERY``: a site
  that revokes its own keys again and again (each needs a key update HQ accepts, and
  a replacement) makes each site send each of its receipts again at most
  ``WINDOW / EVERY + 1`` times. A revocation due meanwhile waits for its turn; none is
  dropped.
- Not for retired keys: a receipt relayed longer ago than a rotation's overlap is
  not looked for (``docs/THREAT_MODEL.md``, known gaps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from envelope.receipt import RECEIPT_CLASS
from gateway.relay.reseal import NOT_YET, ResealResult, has_active_key, reseal_message, stored_head
from gateway.site.context import SiteContext
from gateway.store.base import OutState
from gateway.trust.escrow_rewrap import WINDOW
from routing.directory import Directory, KeyState

EVERY = timedelta(hours=6)
_NEVER = datetime.min.replace(tzinfo=UTC)

Pair = tuple[str, str]  # (site, encryption key id)


def revoked_pairs(directory: Directory) -> set[Pair]:
    """(site, key id) of every encryption key the directory shows revoked."""
    return {
        (entry.site, k.key_id)
        for entry in directory.sites
        for k, state in entry.encryption
        if state is KeyState.REVOKED
    }


class ReceiptSweep:
    """The rules above, for the key watcher: :meth:`run` every round."""

    def __init__(self) -> None:
        self.seen: dict[Pair, datetime] = {}  # revoked key -> when we first saw it so
        self.swept: set[Pair] = set()
        self.last: dict[str, datetime] = {}  # destination -> its last sweep

    def due(self, directory: Directory, now: datetime) -> dict[Pair, datetime]:
        """The revoked keys to sweep now, each with the oldest creation time looked at."""
        for pair in revoked_pairs(directory):
            self.seen.setdefault(pair, now)
        return {
            pair: first - WINDOW
            for pair, first in self.seen.items()
            if pair not in self.swept
            and has_active_key(directory, pair[0])
            and now - self.last.get(pair[0], _NEVER) >= EVERY
        }

    async def run(self, ctx: SiteContext, now: datetime) -> list[ResealResult]:
        due = self.due(ctx.directory, now)
        if not due:
            return []
        results = await reseal_receipts(ctx, due, now=now)
        if not any(r.detail in NOT_YET for r in results):  # else all again next round
            self.swept |= set(due)
            self.last.update({site: now for site, _ in due})
        return results


async def reseal_receipts(
    ctx: SiteContext, due: dict[Pair, datetime], *, now: datetime
) -> list[ResealResult]:
    """Seal again each receipt of ours relayed through the hub, not expired, with a
    stanza to a key of ``due`` and created since the time given for it."""
    since: dict[str, datetime] = {}
    for (site, _), t in due.items():
        since[site] = min(t, since.get(site, t))
    relayed = [
        q.message_id
        for q in await ctx.store.queue(state=OutState.DELIVERED.value)
        if q.origin == ctx.here
        and q.expires > now
        and q.peer not in q.destinations
        and any(q.created >= since[d] for d in q.destinations if d in since)
    ]
    routes = await ctx.store.message_routes(relayed)
    results: list[ResealResult] = []
    for mid in dict.fromkeys(relayed):
        route = routes.get(mid)
        if route is None or route.doc_class != RECEIPT_CLASS:
            continue
        parsed = await stored_head(ctx, mid)
        if parsed is None:
            continue
        created = parsed.head.routing.created
        if not any(
            (s.site, s.key_id) in due and created >= due[(s.site, s.key_id)]
            for s in parsed.head.recipients
        ):
            continue
        results.append(await reseal_message(ctx, mid, now=now, sent_receipt=True))
    return results
