"""Holds per destination (issue 11): the key watcher's hold of mail sealed to a revoked
key (gateway/relay/key_watch.py hold_sealed_to) stops only the destinations sealed to it.

At HQ, where the next hop is the destination, a circular to M-HANOI and M-LIMA with
M-LIMA's key revoked is held for M-LIMA only; M-HANOI's copy goes on. At a mission
origin, whose one hop (HQ) carries every destination, the hop is held only when every
open destination through it is sealed to a revoked key: otherwise HQ holds the stale
one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import cast

from envelope.model import PartInfo, SealedHeader
from envelope.seal import Sealing, new_routing, seal_bytes
from gateway.relay.key_watch import hold_sealed_to
from gateway.relay.submit import record_for
from gateway.site.context import SiteContext
from gateway.store.base import Store
from tests.conftest import Site, make_site
from tests.contract.helpers import T0

PARIS, HANOI, LIMA = make_site("M-PARIS", 2), make_site("M-HANOI", 3), make_site("M-LIMA", 4)


def circular(origin: Site, to: list[Site]) -> bytes:
    routing = new_routing(origin=origin.site, destinations=[s.site for s in to], now=T0)
    sealing = Sealing(
        routing=routing,
        sender=origin.signing,
        recipients=[s.recipient for s in to],
        sealed=SealedHeader(parts=(PartInfo("note.txt", "text/plain", 5),)),
    )
    return seal_bytes(sealing, [b"note\n"])


def revoked(*sites: Site) -> set[tuple[str, str]]:
    return {(s.site, s.decryption.public.key_id) for s in sites}


def context(store: Store) -> SiteContext:
    return cast(SiteContext, SimpleNamespace(store=store))


async def states(store: Store, message_id: str) -> dict[str, str]:
    return {d.site: d.state for d in await store.destinations(message_id)}


async def test_hq_holds_only_the_destination_sealed_to_a_revoked_key(store: Store) -> None:
    data = circular(PARIS, [HANOI, LIMA])
    routes = ((HANOI.site, HANOI.site), (LIMA.site, LIMA.site))
    record = replace(record_for(data, "M-PARIS"), routes=routes)
    await store.accept(
        record, next_hops=[HANOI.site, LIMA.site], deliver_here=False, hop_ack=None, now=T0
    )
    now = T0 + timedelta(minutes=1)
    held = await hold_sealed_to(context(store), revoked(LIMA), now)
    assert held == [record.message_id]
    hops = {q.peer: q.state for q in await store.queue() if q.message_id == record.message_id}
    assert hops == {"M-HANOI": "queued", "M-LIMA": "held"}
    assert await states(store, record.message_id) == {"M-HANOI": "queued", "M-LIMA": "held"}
    (lima,) = [d for d in await store.destinations(record.message_id) if d.site == "M-LIMA"]
    assert lima.reason == (
        f"sealed to revoked encryption key {LIMA.decryption.public.key_id} of M-LIMA"
    )


async def test_a_mission_holds_its_hub_hop_only_if_every_destination_is_stale(
    store: Store,
) -> None:
    data = circular(PARIS, [HANOI, LIMA])
    record = replace(record_for(data, None), routes=((HANOI.site, "HQ"), (LIMA.site, "HQ")))
    await store.accept(record, next_hops=["HQ"], deliver_here=False, hop_ack=None, now=T0)
    now = T0 + timedelta(minutes=1)
    # M-HANOI's key is good: the envelope goes to HQ, which holds M-LIMA's copy.
    assert await hold_sealed_to(context(store), revoked(LIMA), now) == []
    assert await states(store, record.message_id) == {"M-HANOI": "queued", "M-LIMA": "queued"}
    # Both stale: nothing through HQ would open; the hop is held.
    assert await hold_sealed_to(context(store), revoked(HANOI, LIMA), now) == [record.message_id]
    assert await states(store, record.message_id) == {"M-HANOI": "held", "M-LIMA": "held"}
