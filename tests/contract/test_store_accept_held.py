"""Store.accept(held=...) on every backend: a new message's deliveries start held, for
that reason, in the accepting transaction (never claimable meanwhile); a repeated id
changes nothing; release and re-seal take them back as for any hold."""

from __future__ import annotations

from datetime import timedelta

from gateway.store.base import Store
from tests.contract.helpers import HANOI, HQ, PARIS, T0, mid, record

WAITING = "waiting for an encryption key of M-HANOI"


async def test_accept_held_queues_every_delivery_on_hold(store: Store) -> None:
    got = await store.accept(
        record(1, destinations=(PARIS, HANOI)),
        next_hops=[PARIS, HANOI],
        deliver_here=False,
        hop_ack=None,
        now=T0,
        held=WAITING,
    )
    assert got.new
    rows = sorted((q.peer, q.state, q.last_reason) for q in await store.queue())
    assert rows == [(HANOI, "held", WAITING), (PARIS, "held", WAITING)]
    for peer in (PARIS, HANOI):
        claimed = await store.claim(peer=peer, owner="t", limit=5, lease_seconds=30, now=T0)
        assert claimed == []
    assert await store.peers_with_work(now=T0 + timedelta(days=1)) == []
    history = [(t.peer, t.state, t.reason) for t in await store.history(mid(1))]
    assert (HANOI, "held", WAITING) in history and (PARIS, "held", WAITING) in history


async def test_a_repeated_id_is_not_held_again_and_an_unheld_accept_is_queued(
    store: Store,
) -> None:
    await store.accept(record(2), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
    again = await store.accept(
        record(2), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0, held=WAITING
    )
    assert not again.new
    assert [(q.state, q.last_reason) for q in await store.queue()] == [("queued", "")]


async def test_a_held_accept_is_released_like_any_hold(store: Store) -> None:
    await store.accept(
        record(3), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0, held=WAITING
    )
    assert await store.release(mid(3), now=T0, reason="operator") == 1
    claimed = await store.claim(peer=HQ, owner="t", limit=5, lease_seconds=30, now=T0)
    assert [c.message_id for c in claimed] == [mid(3)]
