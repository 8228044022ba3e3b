"""A repeated message gets its first hop acknowledgement back, unless that one is stale.

A receiver answers a message id it already holds with the acknowledgement it signed
the first time (gateway/relay/channel.py), so that a sender retrying after a lost answer
learns nothing new and nothing is stored twice. But when that acknowledgement was
signed with a key of ours that has since been revoked or retired, the sender can
never accept it: it would retry for ever (issue 10, loss 1).

Rules:
- The stored acknowledgement is stale when the key it names is ours, not our
  current signing key, and our own entry in the directory lists it in a state no
  peer accepts (revoked, retired, or retired long enough ago to be listed by id).
  A key our directory does not list at all is not judged: it may be newer than it.
- A stale acknowledgement is replaced by the fresh one the hop checks just signed
  with our current key (a new hop record over the same envelope digest and previous
  signature: gateway/relay/hop.py check_envelope), provided the arriving copy is the very
  envelope stored (same digest) and our current key is itself usable. It is stored
  in place of the old one (only if that is still what the store holds), so that the
  next repeat gets it back unchanged.
- Nothing else changes: the stored envelope, its deliveries and its state stay.
- A repeated id with other bytes that got this far is its origin's re-sealed or
  re-signed copy (gateway/relay/channel.py refuses any other, gateway/relay/reseal.py
  take_resealed_copy) that was not taken in place of ours: ours went on already (or
  was delivered here). It is answered with the fresh acknowledgement of the copy
  received, not the stored one, which names the other copy's digest and would never
  verify for the sender (it would fail the delivery): the sender learns that we hold
  the message, and its receipt, naming our copy, is one its origin accepts
  (gateway/relay/local_delivery.py).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from gateway.relay.hop import Checked
from gateway.runtime import logjson
from gateway.site.context import SiteContext
from routing.directory import USABLE, DirectoryError

log = logging.getLogger("valise.channel")


def stale_ack_key(ctx: SiteContext, ack: bytes) -> str | None:
    """The key id of ours that signed ``ack`` if no peer accepts it any more; None if
    the acknowledgement is still good (or is not ours to judge)."""
    try:
        fields = json.loads(ack)
        key_id, site = str(fields["key"]), str(fields["site"])
    except (ValueError, KeyError, TypeError):
        return None
    if site != ctx.here or key_id == ctx.keys.signing.key_id:
        return None
    try:
        entry = ctx.directory.site(ctx.here)
    except DirectoryError:
        return None
    if ctx.keys.signing.key_id not in entry.verify_keys():
        return None  # our current key is no better: signing again would not help
    if key_id in entry.retired_ids:
        return key_id
    state = entry.states().get(key_id)
    if state is None or state[0] != "signing" or state[1] in USABLE:
        return None
    return key_id


async def ack_for_repeat(ctx: SiteContext, checked: Checked, stored: bytes, now: datetime) -> bytes:
    """The acknowledgement to answer a repeated ``checked`` envelope with: ``stored``
    (the first one), or the fresh one of ``checked`` if ``stored`` is stale (see the
    module rules), which is then kept in its place; or the fresh one of ``checked`` if
    it is another copy of the stored message (its origin's, kept out)."""
    mid = checked.record.message_id
    held = (await ctx.store.sent_digests([mid])).get(mid)
    if held is not None and held.stored != checked.record.digest:
        return checked.hop_ack  # what we received, acknowledged; ours stays
    stale = stale_ack_key(ctx, stored)
    if stale is None or held is None:
        return stored
    await ctx.store.renew_hop_ack(mid, digest=held.stored, old=stored, new=checked.hop_ack)
    logjson.event(
        log,
        logging.INFO,
        "hop_ack_renewed",
        id=mid,
        peer=checked.record.received_from,
        stale_key=stale,
        key=ctx.keys.signing.key_id,
        at=now.isoformat(),
    )
    return checked.hop_ack
