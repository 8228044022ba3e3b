"""The Store calls of batched delivery, run against every backend: reading a batch of
received envelopes, settling it in one transaction, receipts recorded with forwarding,
the claim order. (The claim order index, change notices and the upgrade of a version 1
store are backend-specific: tests/component/test_store_delivery_backends.py.)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.store.base import (
    Closed,
    InboundOutcome,
    InState,
    ReceiptOutcome,
    ReceiptRecord,
    SentMessage,
    Settled,
    Store,
    StoreError,
)
from gateway.store.postgres import PostgresStore
from tests.contract.helpers import HANOI, HQ, PARIS, T0, mid, put, record, states, steps


async def test_accept_keeps_the_class_and_chain_and_claim_returns_them(store: Store) -> None:
    rec = record(1)
    rec = type(rec)(**{**rec.__dict__, "doc_class": "receipt", "chain": b"\x07" * 64})
    await store.accept(rec, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0)
    assert await store.get_envelope(mid(1)) == rec
    (claimed,) = await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=9, now=T0)
    assert (claimed.origin, claimed.digest, claimed.doc_class, claimed.chain) == (
        HQ,
        rec.digest,
        "receipt",
        b"\x07" * 64,
    )
    await put(store, 2)
    (plain,) = await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=9, now=T0)
    assert (plain.doc_class, plain.chain) == ("document", None)


async def test_inbound_received_takes_the_oldest_within_a_byte_budget(store: Store) -> None:
    await put(store, 1, (), here=True, now=T0, data=b"a" * 100)
    await put(store, 2, (), here=True, now=T0 + timedelta(seconds=1), data=b"b" * 100)
    await put(store, 3, (), here=True, now=T0 + timedelta(seconds=2), data=b"c" * 100)
    await put(store, 4, (PARIS,), here=False, now=T0)  # relayed only: not inbound
    await put(store, 5, (), here=True, now=T0 - timedelta(seconds=1), data=b"e" * 500)
    await store.inbound_set(mid(5), InState.AVAILABLE, reason="done", now=T0)
    got = await store.inbound_received(limit=10, max_bytes=10_000)
    assert got == [
        record(1, data=b"a" * 100),
        record(2, data=b"b" * 100),
        record(3, data=b"c" * 100),
    ]
    assert [r.message_id for r in await store.inbound_received(limit=2, max_bytes=10_000)] == [
        mid(1),
        mid(2),
    ]
    assert [r.message_id for r in await store.inbound_received(limit=10, max_bytes=250)] == [
        mid(1),
        mid(2),
    ]
    # The first always comes, even over the budget.
    assert [r.message_id for r in await store.inbound_received(limit=10, max_bytes=1)] == [mid(1)]
    assert await store.inbound_received(limit=0, max_bytes=100) == []


def framed(head: bytes, rest: bytes) -> bytes:
    """A stored copy: the 12-byte framing prefix ending with the head's length."""
    return b"VALISE\x00\x01" + len(head).to_bytes(4, "big") + head + rest


async def test_received_heads_pages_the_items_still_to_open_by_message_id(
    store: Store,
) -> None:
    """The heads (prefix and head, not the segments) of what is still to open here, by
    message id (trust/unopened.py scans them before a key is pruned)."""
    for n in (3, 1, 2, 5):
        await put(store, n, (), here=True, data=framed(b"<head %d/>" % n, b"segments" * 50))
    await put(store, 4, (PARIS,), here=False)  # relayed only: not inbound
    await put(store, 6, (), here=True, data=b"short")  # no whole prefix: the copy as it is
    await store.inbound_set(mid(5), InState.AVAILABLE, reason="done", now=T0)
    first = await store.received_heads(after="", limit=2)
    assert first == [
        (mid(1), framed(b"<head 1/>", b"")),
        (mid(2), framed(b"<head 2/>", b"")),
    ]
    rest = await store.received_heads(after=first[-1][0], limit=2)
    assert rest == [(mid(3), framed(b"<head 3/>", b"")), (mid(6), b"short")]
    assert await store.received_heads(after=mid(6), limit=2) == []
    with pytest.raises(StoreError, match="limit must not be negative"):
        await store.received_heads(after="", limit=-1)


def receipt(n: int, site: str) -> ReceiptRecord:
    """A verified receipt from ``site`` for message ``n`` (its envelope: b"receipt-n")."""
    return ReceiptRecord(mid(n), site, bytes([n + 100]) * 32, bytes([n]) * 32, b"receipt-%d" % n)


async def test_inbound_settle_applies_a_batch_in_one_transaction(store: Store) -> None:
    # At a site that is both a destination and an origin:
    await put(store, 1, (), here=True)  # a document, opened
    await put(store, 2, (), here=True)  # a receipt for message 5, verified
    await put(store, 3, (HANOI,), here=True)  # undeliverable (and relayed on too)
    await put(store, 4, (), here=True)  # already available (another worker got it)
    await put(store, 6, (), here=True)  # a receipt for a message this site never sent
    await store.inbound_set(mid(4), InState.AVAILABLE, reason="opened", now=T0)
    await put(store, 5, (PARIS,))  # sent from here, forwarded
    await store.claim(peer=PARIS, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(mid(5), PARIS)], owner="a", now=T0)
    reply = record(10, priority="immediate")
    later = T0 + timedelta(seconds=5)
    outcomes = [
        InboundOutcome(mid(1), InState.AVAILABLE, "opened", receipt=(reply, (HQ,))),
        InboundOutcome(mid(2), InState.ACKED, "receipt", delivered=receipt(5, PARIS)),
        InboundOutcome(mid(3), InState.ACKED, "undeliverable: bad", failed="bad"),
        InboundOutcome(mid(4), InState.AVAILABLE, "opened", receipt=(record(11), (HQ,))),
        InboundOutcome(mid(6), InState.ACKED, "receipt", delivered=receipt(9, PARIS)),
    ]
    # Message 5 was accepted without routes (no destination rows): its receipt is the
    # message's, as before v11; message 9 is not stored here.
    assert await store.inbound_settle(outcomes, now=later) == [
        Settled(applied=True, delivered=False),
        Settled(applied=True, delivered=True, receipt=ReceiptOutcome("recorded", 1, 1, True)),
        Settled(applied=True, delivered=False, closed=Closed(mid(3), (), "bad", False)),
        Settled(applied=False, delivered=False),
        Settled(applied=True, delivered=False, receipt=ReceiptOutcome("unknown", 0, 0, False)),
    ]
    states = {i.message_id: i.state for i in await store.inbox()}
    assert states == {
        mid(1): "available",
        mid(2): "acked",
        mid(3): "acked",
        mid(4): "available",
        mid(6): "acked",
    }
    # The receipt is queued like any envelope sealed here; the one of the item that was
    # no longer received is not.
    assert await store.get_envelope(mid(10)) == reply
    assert await store.get_envelope(mid(11)) is None
    assert await store.receipt(mid(5)) == b"receipt-5"
    depths = await store.depths()
    assert depths == {(HQ, "queued"): 1, (PARIS, "delivered"): 1, (HANOI, "failed"): 1}
    assert steps(await store.history(mid(1)))[-1] == (None, "available", "opened")
    assert steps(await store.history(mid(3)))[-2:] == [
        (HANOI, "failed", "bad"),
        (None, "acked", "undeliverable: bad"),
    ] or steps(await store.history(mid(3)))[-2:] == [
        (None, "acked", "undeliverable: bad"),
        (HANOI, "failed", "bad"),
    ]
    assert steps(await store.history(mid(5)))[-1] == (PARIS, "delivered", "receipt")
    assert all(t.at == later for t in (await store.history(mid(10))))
    # Settling the same batch again changes nothing.
    again = await store.inbound_settle(outcomes, now=later)
    assert again == [Settled(applied=False, delivered=False)] * 5
    assert await store.depths() == depths
    assert await store.inbound_settle([], now=later) == []
    if isinstance(store, PostgresStore):
        async with store._pool.acquire() as conn:
            xids = await conn.fetch(
                "SELECT DISTINCT xmin::text FROM inbound WHERE message_id = ANY($1::text[])",
                [mid(1), mid(2), mid(3), mid(6)],
            )
        assert len(xids) == 1


async def test_forwarded_records_acknowledged_receipts_in_the_same_call(store: Store) -> None:
    await put(store, 1)
    await put(store, 2)
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.forwarded(
        [(mid(1), PARIS), (mid(2), PARIS)], owner="a", now=T0, receipts=[(mid(2), b"ack-json")]
    )
    assert await store.depths() == {(PARIS, "forwarded"): 1, (PARIS, "delivered"): 1}
    assert await store.receipt(mid(2)) == b"ack-json"
    assert steps(await store.history(mid(2)))[-2:] == [
        (PARIS, "forwarded", ""),
        (PARIS, "delivered", "receipt"),
    ]
    await store.forwarded([], owner="a", now=T0, receipts=[(mid(2), b"again")])
    assert await store.receipt(mid(2)) == b"ack-json"


async def test_a_courier_fails_only_its_own_try(store: Store) -> None:
    """fail(owner=...) is a courier's answer for its try: it counts only while the
    delivery is still sending under that lease (review 10c F1: the refusal of an old
    copy failed the origin's re-sealed copy that had taken the row meanwhile)."""
    await put(store, 1, (PARIS, HANOI))
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    assert await store.fail(mid(1), PARIS, reason="x", now=T0, owner="b") is None
    assert await states(store, mid(1)) == {PARIS: "sending", HANOI: "queued"}
    # HANOI's row is not sending: not this courier's either.
    assert await store.fail(mid(1), HANOI, reason="x", now=T0, owner="a") is None
    await store.defer(
        mid(1), PARIS, owner="a", reason="later", next_attempt=T0, now=T0
    )  # the row moved on (as a re-sealed copy requeues it)
    assert await store.fail(mid(1), PARIS, reason="x", now=T0, owner="a") is None
    assert await states(store, mid(1)) == {PARIS: "deferred", HANOI: "queued"}
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    assert await store.fail(mid(1), PARIS, reason="refused", now=T0, owner="a") is not None
    assert await states(store, mid(1)) == {PARIS: "failed", HANOI: "queued"}
    assert steps(await store.history(mid(1)))[-1] == (PARIS, "failed", "refused")


async def test_forwarded_skips_a_receipt_proof_for_a_message_not_stored_here(
    store: Store,
) -> None:
    """A proof for a message gone meanwhile (deleted by the operator) records nothing;
    the call's other changes stand (on every backend)."""
    await put(store, 1)
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), PARIS)], owner="a", now=T0, receipts=[(mid(9), b"ack")])
    assert await store.depths() == {(PARIS, "forwarded"): 1}
    assert await store.history(mid(9)) == []


async def test_forwarded_records_a_batch_of_proofs_the_first_of_a_message_standing(
    store: Store,
) -> None:
    """Several proofs in one call (PostgreSQL takes them in one statement: issue 13's
    bench): each message's first proof stands, also within the batch; a hop row not
    claimed moves too; a message with destination rows takes none (its receipts are per
    destination); a message without deliveries still logs its receipt."""
    await put(store, 1)
    await put(store, 2, hops=(PARIS, HANOI))
    await put(store, 3, hops=())
    routed = replace(record(4), routes=((PARIS, PARIS),))
    await store.accept(routed, next_hops=(PARIS,), deliver_here=False, hop_ack=b"a4", now=T0)
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    later = T0 + timedelta(seconds=1)
    await store.forwarded(
        [(mid(1), PARIS)],
        owner="a",
        now=later,
        receipts=[
            (mid(1), b"p1"),
            (mid(2), b"p2"),
            (mid(1), b"p1-again"),
            (mid(3), b"p3"),
            (mid(4), b"p4"),
        ],
    )
    assert [await store.receipt(mid(n)) for n in (1, 2, 3, 4)] == [b"p1", b"p2", b"p3", None]
    assert await states(store, mid(1)) == {PARIS: "delivered"}
    assert await states(store, mid(2)) == {PARIS: "delivered", HANOI: "delivered"}
    assert await states(store, mid(4)) == {PARIS: "sending"}
    assert steps(await store.history(mid(1)))[-2:] == [
        (PARIS, "forwarded", ""),
        (PARIS, "delivered", "receipt"),
    ]
    assert steps(await store.history(mid(2)))[-2:] == [
        (HANOI, "delivered", "receipt"),
        (PARIS, "delivered", "receipt"),
    ]
    assert steps(await store.history(mid(3)))[-1] == (None, "delivered", "receipt")
    assert all(h.at == later for h in (await store.history(mid(2)))[-2:])


async def test_sent_digests(store: Store) -> None:
    await put(store, 1, destinations=(PARIS, HANOI))
    await put(store, 2)
    await put(store, 3, received_from=HANOI)  # received here, not sent: review 11b F4
    got = await store.sent_digests([mid(1), mid(2), mid(9), mid(1), mid(3)])
    d1, d2, d3 = record(1).digest, record(2).digest, record(3).digest
    assert got == {
        mid(1): SentMessage((PARIS, HANOI), frozenset({d1}), {}, d1, True, "document"),
        mid(2): SentMessage((PARIS,), frozenset({d2}), {}, d2, True, "document"),
        mid(3): SentMessage((PARIS,), frozenset({d3}), {}, d3, False, "document"),
    }
    assert await store.sent_digests([]) == {}


async def test_peers_with_work_across_many_peers_and_states(store: Store) -> None:
    peers = [f"M-P{i:02d}" for i in range(12)]
    for n, peer in enumerate(peers):
        await put(store, n + 1, (peer,))
    # P00 forwarded, P01 deferred (due later), P02 sending (lease live), P03 held.
    for peer in peers[:3]:
        await store.claim(peer=peer, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), peers[0])], owner="a", now=T0)
    due = T0 + timedelta(seconds=30)
    await store.defer(mid(2), peers[1], owner="a", reason="x", next_attempt=due, now=T0)
    await store.hold(mid(4), now=T0, reason="check")
    assert await store.peers_with_work(now=T0) == peers[4:]
    assert await store.peers_with_work(now=due) == [peers[1], *peers[4:]]
    late = T0 + timedelta(minutes=2)  # the lease has run out
    assert await store.peers_with_work(now=late) == [peers[1], peers[2], *peers[4:]]


async def test_claim_takes_due_work_of_every_kind_in_claim_order(store: Store) -> None:
    await put(store, 1, priority="routine", created=T0)
    await put(store, 2, priority="flash", created=T0 + timedelta(minutes=1))
    await put(store, 3, priority="routine", created=T0 - timedelta(minutes=1))
    await store.claim(peer=PARIS, owner="a", limit=3, lease_seconds=10, now=T0)
    await store.defer(mid(3), PARIS, owner="a", reason="x", next_attempt=T0, now=T0)
    await put(store, 4, priority="immediate", created=T0)
    late = T0 + timedelta(seconds=11)  # 1 and 2 are sending under an expired lease
    got = await store.claim(peer=PARIS, owner="b", limit=10, lease_seconds=10, now=late)
    assert [c.message_id for c in got] == [mid(2), mid(4), mid(3), mid(1)]
    assert [c.attempts for c in got] == [2, 1, 2, 2]
