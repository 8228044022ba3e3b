"""Review 11b: two different receipts from one destination, racing at the hub.

HQ refuses a second, different receipt envelope from a destination already receipted
there (gateway/relay/hop.py check_receipt, gateway/relay/circular.py hub_second_receipt) — but that
check reads the store *before* the accepting transaction (gateway/relay/channel.py
_fitting_receipts reads message_routes, then accept_many commits). Two hop requests
from M-HANOI, each checked before either committed, both pass; the store then takes
the second envelope as new and queues it to be relayed to the origin, although its
(message, destination) row already holds the first receipt (record_receipt_rows
answers ``duplicate`` inside the same transaction and nothing acts on it). HQ relays
two receipts for one destination, counts both in
valise_destination_receipts_total{kind="relayed"} and stamps both ``delivered``.

This test replays that interleaving at the store, on both backends: the first
request's accept, then the second's (its check having passed against the same
snapshot). The store, the only place the two meet, must not queue the second for relay.
"""

from __future__ import annotations

from gateway.store.base import Store
from tests.contract.helpers import HANOI, PARIS, T0
from tests.contract.test_store_destinations import MINUTE, hub_circular, relayed_receipt


async def test_a_second_receipt_racing_the_first_is_not_relayed(store: Store) -> None:
    h = await hub_circular(store, 1)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(h, HANOI)], owner="a", now=T0)
    before = (await store.message_routes([h]))[h]
    assert HANOI not in before.receipted  # what both requests' checks saw
    first = relayed_receipt(20, h, HANOI)
    second = relayed_receipt(21, h, HANOI, variant=1)
    t1 = T0 + MINUTE
    a = await store.accept(first, next_hops=[PARIS], deliver_here=False, hop_ack=b"a", now=t1)
    assert a.new
    await store.accept(second, next_hops=[PARIS], deliver_here=False, hop_ack=b"b", now=t1)
    relayed = {q.message_id for q in await store.queue() if q.peer == PARIS}
    assert first.message_id in relayed
    assert second.message_id not in relayed, (
        "HQ queued a second, different receipt from M-HANOI for relay: the first stands"
    )


async def test_the_store_refusal_says_why_and_keeps_nothing(store: Store) -> None:
    h = await hub_circular(store, 1)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(h, HANOI)], owner="a", now=T0)
    first = relayed_receipt(20, h, HANOI)
    second = relayed_receipt(21, h, HANOI, variant=1)
    t1 = T0 + MINUTE
    # One batch: the first, a second different one, and that second one again.
    got = await store.accept_many(
        [(r, [PARIS], False, b"ack") for r in (first, second, second)], now=t1
    )
    assert [a.new for a in got] == [True, False, False]
    assert got[0].refused is None
    held = f"sha256 {first.digest.hex()[:16]}…"
    why = f"a second receipt from {HANOI} for {h}: the first ({held}) stands"
    assert got[1].refused == why and got[2].refused == why
    assert await store.get_envelope(second.message_id) is None
    assert [q.message_id for q in await store.queue() if q.peer == PARIS] == [first.message_id]
    hanoi = {d.site: d for d in await store.destinations(h)}[HANOI]
    assert (hanoi.state, hanoi.receipt_digest) == ("delivered", first.digest)
    # A later request with the second one is refused the same way; the first again is a
    # duplicate with its acknowledgement, as before.
    again = await store.accept(second, next_hops=[PARIS], deliver_here=False, hop_ack=b"c", now=t1)
    assert again.refused == why and not again.new
    repeat = await store.accept(first, next_hops=[PARIS], deliver_here=False, hop_ack=b"d", now=t1)
    assert (repeat.new, repeat.hop_ack, repeat.refused) == (False, b"ack", None)
