"""Delivery state and receipts per final destination (issue 11), against every backend.

The scene: M-PARIS sends a circular to [HQ, M-HANOI] (and M-ROME where a third is
needed). At M-PARIS (the origin) every destination goes through one hop, HQ. At HQ (the
hub) the relayed copy has a row for HQ itself (hop None: delivered here) and one per
mission it forwards to (hop = the mission).

Fixtures: tests/contract/conftest.py; helpers: tests/contract/helpers.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.store._common import DUPLICATE_RECEIPT, LATE_RECEIPT_REASON, RELAYED_RECEIPT_REASON
from gateway.store.base import (
    Closed,
    Destination,
    EnvelopeRecord,
    InboundOutcome,
    InState,
    ReceiptOutcome,
    ReceiptRecord,
    Store,
    StoreError,
)
from tests.contract.helpers import HANOI, HQ, PARIS, T0, mid, record, steps

ROME = "M-ROME"
EVIL = "M-EVIL"
MINUTE = timedelta(minutes=1)


def circular(
    n: int,
    routes: tuple[tuple[str, str | None], ...],
    *,
    received_from: str | None = None,
    expires: timedelta = timedelta(days=7),
) -> EnvelopeRecord:
    """Message ``n`` from M-PARIS to the sites of ``routes``, as routed here."""
    base = record(
        n,
        destinations=tuple(site for site, _ in routes),
        received_from=received_from,
        expires=T0 + expires,
    )
    return replace(base, origin=PARIS, routes=routes)


async def origin_circular(store: Store, n: int, sites: tuple[str, ...] = (HQ, HANOI)) -> str:
    """At M-PARIS: message n to ``sites``, all through HQ, accepted and forwarded to HQ."""
    rec = circular(n, tuple((s, HQ) for s in sites))
    await store.accept(rec, next_hops=[HQ], deliver_here=False, hop_ack=b"ack", now=T0)
    await store.claim(peer=HQ, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(rec.message_id, HQ)], owner="a", now=T0)
    return rec.message_id


async def hub_circular(store: Store, n: int, missions: tuple[str, ...] = (HANOI, ROME)) -> str:
    """At HQ: message n from M-PARIS to HQ (delivered here) and ``missions``."""
    routes = ((HQ, None), *((m, m) for m in missions))
    rec = circular(n, routes, received_from=PARIS)
    await store.accept(rec, next_hops=list(missions), deliver_here=True, hop_ack=b"ack", now=T0)
    return rec.message_id


def receipt(
    n: int, site: str, *, variant: int = 0, for_digest: bytes | None = None
) -> ReceiptRecord:
    """A verified receipt from ``site`` for message n (its envelope's own digest and bytes
    differ per site and ``variant``)."""
    tag = f"{site}/{variant}".encode()
    digest = (tag * 32)[:32]
    return ReceiptRecord(
        mid(n), site, digest, for_digest or record(n).digest, b"receipt-envelope:" + tag
    )


def relayed_receipt(n: int, answers: str, signer: str, *, variant: int = 0) -> EnvelopeRecord:
    """At HQ: a receipt envelope signed by ``signer`` for message ``answers``, received
    from ``signer`` to be relayed back to M-PARIS."""
    return replace(
        record(n, destinations=(PARIS,), received_from=signer, data=b"rcpt-%d-%d" % (n, variant)),
        origin=signer,
        doc_class="receipt",
        answers=answers,
    )


def by_site(dests: list[Destination]) -> dict[str, tuple[str, str]]:
    return {d.site: (d.state, d.reason) for d in dests}


async def hop_states(store: Store, message_id: str) -> dict[str, str]:
    return {q.peer: q.state for q in await store.queue() if q.message_id == message_id}


# -- rows -------------------------------------------------------------------------------


async def test_routes_make_one_row_per_destination_at_the_origin_and_hub_only(
    store: Store,
) -> None:
    m1 = await origin_circular(store, 1, (HQ, HANOI, ROME))
    dests = await store.destinations(m1)
    assert [(d.site, d.hop, d.state) for d in dests] == [
        (HQ, HQ, "forwarded"),
        (HANOI, HQ, "forwarded"),
        (ROME, HQ, "forwarded"),
    ]
    assert all(d.receipt_at is None and d.receipt_size == 0 for d in dests)
    assert all(d.attempts == 1 for d in dests)
    m2 = await hub_circular(store, 2)
    assert [(d.site, d.hop, d.state, d.attempts) for d in await store.destinations(m2)] == [
        (HQ, None, "queued", 0),
        (HANOI, HANOI, "queued", 0),
        (ROME, ROME, "queued", 0),
    ]
    # A pure destination (no routes) and a receipt envelope have no rows.
    plain = record(3, destinations=(HQ,), received_from=PARIS)
    await store.accept(plain, next_hops=[], deliver_here=True, hop_ack=None, now=T0)
    rcpt = relayed_receipt(4, m2, HANOI)
    await store.accept(rcpt, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0)
    assert await store.destinations(mid(3)) == []
    assert await store.destinations(mid(4)) == []
    assert await store.destinations(mid(99)) == []
    # A site routed twice gets one row (the first route); accepting again adds none.
    twice = circular(5, ((HANOI, HQ), (HANOI, ROME)))
    await store.accept(twice, next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
    await store.accept(
        replace(twice, routes=((ROME, HQ),)),
        next_hops=[HQ],
        deliver_here=False,
        hop_ack=None,
        now=T0,
    )
    assert [(d.site, d.hop) for d in await store.destinations(mid(5))] == [(HANOI, HQ)]


async def test_a_receipt_marks_its_destination_only_and_the_hop_when_all_are_in(
    store: Store,
) -> None:
    m = await origin_circular(store, 1)
    t1, t2 = T0 + MINUTE, T0 + 2 * MINUTE
    (first,) = await store.record_receipts([receipt(1, HQ)], now=t1)
    assert first == ReceiptOutcome("recorded", 1, 2, False)
    dests = {d.site: d for d in await store.destinations(m)}
    assert (dests[HQ].state, dests[HQ].receipt_at) == ("delivered", t1)
    assert dests[HQ].receipt_digest == receipt(1, HQ).receipt_digest
    assert dests[HQ].receipt_for == record(1).digest
    assert dests[HQ].receipt_size == len(receipt(1, HQ).data or b"")
    assert (dests[HANOI].state, dests[HANOI].receipt_at) == ("forwarded", None)
    # The hop row waits for every destination routed through it.
    assert await hop_states(store, m) == {HQ: "forwarded"}
    assert steps(await store.history(m))[-1] == (
        HQ,
        "delivered",
        "receipt sha256:" + receipt(1, HQ).receipt_digest.hex()[:16],
    )
    (second,) = await store.record_receipts([receipt(1, HANOI)], now=t2)
    assert second == ReceiptOutcome("recorded", 2, 2, True)
    assert by_site(await store.destinations(m)) == {
        HQ: ("delivered", "receipt"),
        HANOI: ("delivered", "receipt"),
    }
    assert await hop_states(store, m) == {HQ: "delivered"}
    assert steps(await store.history(m))[-2:] == [
        (HANOI, "delivered", "receipt sha256:" + receipt(1, HANOI).receipt_digest.hex()[:16]),
        (HQ, "delivered", "receipt"),
    ]
    assert await store.destination_receipt(m, HQ) == receipt(1, HQ).data
    assert await store.destination_receipt(m, HANOI) == receipt(1, HANOI).data
    assert await store.destination_receipt(m, ROME) is None
    # receipt() is a single destination's only: a circular has one per site.
    assert await store.receipt(m) is None
    sent = (await store.sent_digests([m]))[m]
    assert sent.receipted == {
        HQ: receipt(1, HQ).receipt_digest,
        HANOI: receipt(1, HANOI).receipt_digest,
    }
    assert sent.digests == frozenset({record(1).digest})


async def test_a_single_destination_reads_as_before(store: Store) -> None:
    m = await origin_circular(store, 1, (HQ,))
    assert await store.receipt(m) is None
    assert await store.delivered(m, receipt=b"the receipt", now=T0 + MINUTE) is True
    assert await store.receipt(m) == b"the receipt"
    assert await hop_states(store, m) == {HQ: "delivered"}
    assert await store.delivered(m, receipt=b"another", now=T0 + MINUTE) is False
    assert await store.receipt(m) == b"the receipt"
    # A circular needs the site named; an unknown one is an error.
    c = await origin_circular(store, 2)
    with pytest.raises(StoreError, match="2 destinations"):
        await store.delivered(c, receipt=b"r", now=T0)
    with pytest.raises(StoreError, match="not a destination"):
        await store.delivered(c, receipt=b"r", now=T0, site=EVIL)
    assert await store.delivered(c, receipt=b"r", now=T0, site=HANOI, receipt_digest=b"d" * 32)
    assert [d.state for d in await store.destinations(c)] == ["forwarded", "delivered"]


async def test_a_second_receipt_for_a_destination_changes_nothing(store: Store) -> None:
    m = await origin_circular(store, 1)
    await store.record_receipts([receipt(1, HQ)], now=T0 + MINUTE)
    dests, history = await store.destinations(m), await store.history(m)
    late = T0 + 5 * MINUTE
    # The same receipt again, and a different one from the same site.
    outcomes = await store.record_receipts([receipt(1, HQ), receipt(1, HQ, variant=1)], now=late)
    assert outcomes == [ReceiptOutcome("duplicate", 1, 2, False)] * 2
    assert await store.destinations(m) == dests
    assert await store.history(m) == history
    assert await store.destination_receipt(m, HQ) == receipt(1, HQ).data
    # Completing, then a duplicate of the last: completed stays reported once.
    assert (await store.record_receipts([receipt(1, HANOI)], now=late))[0].completed
    again = await store.record_receipts([receipt(1, HANOI, variant=2)], now=late)
    assert again == [ReceiptOutcome("duplicate", 2, 2, False)]


async def test_a_receipt_for_a_site_without_a_row_is_unknown_and_changes_nothing(
    store: Store,
) -> None:
    m = await origin_circular(store, 1)
    dests, history = await store.destinations(m), await store.history(m)
    outcomes = await store.record_receipts(
        [receipt(1, EVIL), receipt(7, HQ), ReceiptRecord(mid(1), "", b"x" * 32, None, None)],
        now=T0 + MINUTE,
    )
    assert outcomes == [
        ReceiptOutcome("unknown", 0, 2, False),
        ReceiptOutcome("unknown", 0, 0, False),
        ReceiptOutcome("unknown", 0, 2, False),
    ]
    assert await store.destinations(m) == dests
    assert await store.history(m) == history
    assert await store.record_receipts([], now=T0) == []
    with pytest.raises(StoreError):
        await store.record_receipts([(mid(1), b"r")], now=T0)  # type: ignore[list-item]


async def test_two_receipts_for_one_site_in_one_batch_record_the_first(store: Store) -> None:
    m = await origin_circular(store, 1)
    first, second = receipt(1, HANOI, variant=1), receipt(1, HANOI, variant=2)
    outcomes = await store.record_receipts([first, second, receipt(1, HQ)], now=T0 + MINUTE)
    assert outcomes == [
        ReceiptOutcome("recorded", 1, 2, False),
        ReceiptOutcome("duplicate", 1, 2, False),
        ReceiptOutcome("recorded", 2, 2, True),
    ]
    hanoi = {d.site: d for d in await store.destinations(m)}[HANOI]
    assert hanoi.receipt_digest == first.receipt_digest
    assert await store.destination_receipt(m, HANOI) == first.data
    delivered = [t for t in await store.history(m) if t.state == "delivered" and t.peer == HANOI]
    assert len(delivered) == 1


async def test_completed_is_reported_once(store: Store) -> None:
    m = await origin_circular(store, 1, (HQ, HANOI, ROME))
    await store.record_receipts([receipt(1, HQ)], now=T0 + MINUTE)
    # The last two destinations close at once, from two callers: one gets completed.
    outcomes = await asyncio.gather(
        store.record_receipts([receipt(1, HANOI)], now=T0 + 2 * MINUTE),
        store.fail(m, None, reason="cancelled", now=T0 + 2 * MINUTE),
    )
    receipts, closed = outcomes
    assert isinstance(closed, Closed)
    assert [receipts[0].completed, closed.completed].count(True) == 1
    states = by_site(await store.destinations(m))
    assert states[ROME] == ("failed", "cancelled")
    # A late receipt after a failure is recorded (proof of delivery), not completed again.
    (late,) = await store.record_receipts([receipt(1, ROME)], now=T0 + 3 * MINUTE)
    assert late.status == "recorded" and not late.completed
    assert by_site(await store.destinations(m))[ROME] == ("delivered", LATE_RECEIPT_REASON)
    # Every destination has its receipt now (M-HANOI's before or after the failure): the
    # hop row is delivered too.
    (rome, hop) = steps(await store.history(m))[-2:]
    assert rome[:2] == (ROME, "delivered")
    assert rome[2].startswith(LATE_RECEIPT_REASON + " sha256:")
    assert hop == (HQ, "delivered", "receipt")
    assert await store.fail(m, None, reason="again", now=T0 + 4 * MINUTE) is None


# -- failing, expiring, holding ------------------------------------------------------------


async def test_expire_fails_only_outstanding_destinations(store: Store) -> None:
    soon = timedelta(hours=1)
    # The origin: HQ receipted, M-HANOI forwarded without one.
    o = circular(1, ((HQ, HQ), (HANOI, HQ)), expires=soon)
    await store.accept(o, next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
    await store.claim(peer=HQ, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.forwarded([(o.message_id, HQ)], owner="a", now=T0)
    await store.record_receipts([receipt(1, HQ)], now=T0 + MINUTE)
    # The hub: M-HANOI forwarded (its expiry is M-HANOI's job now), M-ROME still queued.
    h = circular(2, ((HQ, None), (HANOI, HANOI), (ROME, ROME)), received_from=PARIS, expires=soon)
    await store.accept(h, next_hops=[HANOI, ROME], deliver_here=True, hop_ack=None, now=T0)
    await store.claim(peer=HANOI, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.forwarded([(h.message_id, HANOI)], owner="a", now=T0)
    assert await store.expire(now=T0 + soon - MINUTE) == []
    closed = await store.expire(now=T0 + soon)
    assert closed == [
        Closed(o.message_id, (HANOI,), "expired", True),
        Closed(h.message_id, (ROME,), "expired", False),
    ]
    assert by_site(await store.destinations(o.message_id)) == {
        HQ: ("delivered", "receipt"),
        HANOI: ("failed", "expired"),
    }
    assert await hop_states(store, o.message_id) == {HQ: "failed"}
    assert by_site(await store.destinations(h.message_id)) == {
        HQ: ("queued", ""),
        HANOI: ("forwarded", ""),
        ROME: ("failed", "expired"),
    }
    assert await hop_states(store, h.message_id) == {HANOI: "forwarded", ROME: "failed"}
    assert await store.expire(now=T0 + soon + MINUTE) == []


async def test_fail_closes_the_destinations_through_that_hop_and_retry_reopens_them(
    store: Store,
) -> None:
    h = await hub_circular(store, 1)
    await store.claim(peer=ROME, owner="a", limit=1, lease_seconds=60, now=T0)
    closed = await store.fail(h, ROME, reason="refused by M-ROME: no", now=T0 + MINUTE)
    assert closed == Closed(h, (ROME,), "refused by M-ROME: no", False)
    assert by_site(await store.destinations(h)) == {
        HQ: ("queued", ""),
        HANOI: ("queued", ""),
        ROME: ("failed", "refused by M-ROME: no"),
    }
    assert steps(await store.history(h))[-2:] == [
        (ROME, "failed", "refused by M-ROME: no"),
        (ROME, "failed", "refused by M-ROME: no"),
    ]
    assert await store.retry(h, now=T0 + 2 * MINUTE, reason="operator: retry") == 1
    assert by_site(await store.destinations(h))[ROME] == ("queued", "operator: retry")
    assert steps(await store.history(h))[-1] == (ROME, "queued", "operator: retry")
    # The origin: failing its one hop closes every destination and completes the message.
    o = await origin_circular(store, 2)
    closed = await store.fail(o, HQ, reason="refused by HQ: no", now=T0)
    assert closed == Closed(o, (HQ, HANOI), "refused by HQ: no", True)
    assert await hop_states(store, o) == {HQ: "forwarded"}  # forwarded: not failed, kept
    assert await store.retry(o, now=T0, reason="retry") == 0  # nor requeued: rows stay
    assert [d.state for d in await store.destinations(o)] == ["failed", "failed"]
    # A hop row that fails reopens its destinations when retried.
    await store.accept(
        circular(3, ((HQ, HQ), (HANOI, HQ))),
        next_hops=[HQ],
        deliver_here=False,
        hop_ack=None,
        now=T0,
    )
    await store.claim(peer=HQ, owner="a", limit=5, lease_seconds=60, now=T0)
    closed = await store.fail(mid(3), HQ, reason="refused by HQ: no", now=T0)
    assert closed == Closed(mid(3), (HQ, HANOI), "refused by HQ: no", True)
    assert await store.retry(mid(3), now=T0 + MINUTE, reason="retry") == 1
    assert [d.state for d in await store.destinations(mid(3))] == ["queued", "queued"]
    # Closed again later: the reopened message completes a second time.
    again = await store.fail(mid(3), None, reason="cancelled", now=T0 + 2 * MINUTE)
    assert again == Closed(mid(3), (HQ, HANOI), "cancelled", True)
    with pytest.raises(StoreError):
        await store.fail(mid(9), None, reason="x", now=T0)


async def test_hold_with_peers_holds_only_those_hops(store: Store) -> None:
    h = await hub_circular(store, 1)
    held = await store.hold(h, now=T0, reason="key watch: M-HANOI's key revoked", peers=[HANOI])
    assert held == 1
    assert await hop_states(store, h) == {HANOI: "held", ROME: "queued"}
    assert by_site(await store.destinations(h)) == {
        HQ: ("queued", ""),
        HANOI: ("held", "key watch: M-HANOI's key revoked"),
        ROME: ("queued", ""),
    }
    assert await store.hold(h, now=T0, reason="x", peers=[]) == 0
    assert await store.hold(h, now=T0, reason="x", peers=[EVIL]) == 0
    assert await store.hold(h, now=T0, reason="all") == 1  # ROME; HANOI is held already


async def test_replace_sealed_keeps_receipts_and_the_prior_digest(store: Store) -> None:
    o = await origin_circular(store, 1)
    await store.record_receipts([receipt(1, HQ)], now=T0 + MINUTE)
    new_digest = b"\xee" * 32
    moved = await store.replace_sealed(
        o,
        data=b"resealed",
        digest=new_digest,
        chain=b"c" * 64,
        hop_ack=None,
        expected_digest=record(1).digest,
        requeue=["forwarded", "held", "failed", "deferred"],
        held_for=None,
        now=T0 + 2 * MINUTE,
        reason="re-sealed: M-HANOI's key revoked",
    )
    assert moved == 1
    dests = {d.site: d for d in await store.destinations(o)}
    assert (dests[HQ].state, dests[HQ].receipt_digest) == (
        "delivered",
        receipt(1, HQ).receipt_digest,
    )
    assert dests[HANOI].state == "queued"
    sent = (await store.sent_digests([o]))[o]
    # The replaced copy's digest stays acceptable (superseded, v10): HQ's receipt named it.
    assert sent.digests == frozenset({record(1).digest, new_digest})
    assert sent.stored == new_digest
    assert sent.receipted == {HQ: receipt(1, HQ).receipt_digest}
    # Once every destination has its receipt, nothing is re-sealed.
    await store.record_receipts([receipt(1, HANOI, for_digest=new_digest)], now=T0)
    kept = await store.get_envelope(o)
    assert kept is not None
    assert (
        await store.replace_sealed(
            o,
            data=b"again",
            digest=b"\xdd" * 32,
            chain=b"c" * 64,
            hop_ack=None,
            expected_digest=new_digest,
            requeue=["forwarded", "failed"],
            held_for=None,
            now=T0,
            reason="x",
        )
        == 0
    )
    assert await store.get_envelope(o) == kept


async def test_replace_sealed_reopens_a_failed_destination_it_requeues(store: Store) -> None:
    h = await hub_circular(store, 1)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.fail(h, HANOI, reason="refused by M-HANOI: stale key", now=T0)
    moved = await store.replace_sealed(
        h,
        data=b"resigned",
        digest=b"\xaa" * 32,
        chain=b"c" * 64,
        hop_ack=None,
        expected_digest=record(1).digest,
        requeue=["failed"],
        held_for=None,
        now=T0 + MINUTE,
        reason="re-signed",
    )
    assert moved == 1
    assert by_site(await store.destinations(h))[HANOI] == ("queued", "re-signed")


async def test_a_relayed_receipt_marks_the_hub_row_in_the_accepting_transaction(
    store: Store,
) -> None:
    h = await hub_circular(store, 1)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(h, HANOI)], owner="a", now=T0)
    rc = relayed_receipt(20, h, HANOI)
    t1 = T0 + MINUTE
    acc = await store.accept(rc, next_hops=[PARIS], deliver_here=False, hop_ack=b"a", now=t1)
    assert acc.new
    dests = {d.site: d for d in await store.destinations(h)}
    assert (dests[HANOI].state, dests[HANOI].reason) == ("delivered", RELAYED_RECEIPT_REASON)
    assert (dests[HANOI].receipt_digest, dests[HANOI].receipt_for) == (rc.digest, None)
    assert (dests[HANOI].receipt_at, dests[HANOI].receipt_size) == (t1, 0)
    assert await hop_states(store, h) == {HANOI: "delivered", ROME: "queued"}
    assert (await store.message_routes([h]))[h].receipted == {HANOI: rc.digest}
    # The same receipt again: a duplicate acceptance, nothing recorded twice.
    history = await store.history(h)
    again = await store.accept(rc, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1)
    assert not again.new
    # Another receipt envelope from M-HANOI (the hub check refuses it first) changes nothing.
    other = relayed_receipt(21, h, HANOI, variant=1)
    await store.accept(other, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1)
    # A receipt from a site that is not a destination, and one for an unknown message.
    evil = relayed_receipt(22, h, EVIL)
    await store.accept(evil, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1)
    lost = relayed_receipt(23, mid(99), HANOI)
    await store.accept(lost, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1)
    # A receipt "from HQ" received from a peer: HQ's own row is closed by HQ alone.
    mask = relayed_receipt(25, h, HQ)
    await store.accept(mask, next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1)
    assert await store.history(h) == history
    assert {d.site: d.receipt_digest for d in await store.destinations(h)}[HANOI] == rc.digest
    assert await store.destinations(mid(22)) == []
    assert by_site(await store.destinations(h))[HQ] == ("queued", "")
    # Delivered here as well: a receipt addressed to this site is not a relayed one.
    mine = replace(relayed_receipt(24, h, ROME), destinations=(HQ,))
    await store.accept(mine, next_hops=[], deliver_here=True, hop_ack=None, now=t1)
    assert by_site(await store.destinations(h))[ROME] == ("queued", "")


async def test_undeliverable_here_fails_only_this_sites_row(store: Store) -> None:
    h = await hub_circular(store, 1)
    settled = await store.inbound_settle(
        [InboundOutcome(h, InState.ACKED, "undeliverable: bad", failed="bad", failed_site=HQ)],
        now=T0 + MINUTE,
    )
    assert settled[0].applied and settled[0].closed == Closed(h, (HQ,), "bad", False)
    assert by_site(await store.destinations(h)) == {
        HQ: ("failed", "bad"),
        HANOI: ("queued", ""),
        ROME: ("queued", ""),
    }
    assert await hop_states(store, h) == {HANOI: "queued", ROME: "queued"}


async def test_the_hubs_own_receipt_closes_its_row(store: Store) -> None:
    h = await hub_circular(store, 1, (HANOI,))
    own = ReceiptRecord(h, HQ, b"\x01" * 32, record(1).digest, None, "delivered here")
    settled = await store.inbound_settle(
        [InboundOutcome(h, InState.AVAILABLE, "opened", own_receipt=own)], now=T0 + MINUTE
    )
    assert settled[0].applied and settled[0].receipt is None
    assert by_site(await store.destinations(h)) == {
        HQ: ("delivered", "delivered here"),
        HANOI: ("queued", ""),
    }


async def test_an_inbound_duplicate_receipt_is_acked_with_the_reason(store: Store) -> None:
    m = await origin_circular(store, 1)
    await store.record_receipts([receipt(1, HANOI)], now=T0)
    for n in (30, 31):
        item = replace(record(n, destinations=(PARIS,), received_from=HQ), doc_class="receipt")
        await store.accept(item, next_hops=[], deliver_here=True, hop_ack=None, now=T0)
    settled = await store.inbound_settle(
        [
            InboundOutcome(
                mid(30), InState.ACKED, "receipt", delivered=receipt(1, HANOI, variant=3)
            ),
            InboundOutcome(mid(31), InState.ACKED, "receipt", delivered=receipt(1, HQ)),
        ],
        now=T0 + MINUTE,
    )
    assert [s.receipt for s in settled] == [
        ReceiptOutcome("duplicate", 1, 2, False),
        ReceiptOutcome("recorded", 2, 2, True),
    ]
    assert [s.delivered for s in settled] == [False, True]
    assert steps(await store.history(mid(30)))[-1] == (
        None,
        "acked",
        DUPLICATE_RECEIPT.format(site=HANOI),
    )
    assert steps(await store.history(mid(31)))[-1] == (None, "acked", "receipt")
    assert {d.site: d.receipt_digest for d in await store.destinations(m)}[HANOI] == (
        receipt(1, HANOI).receipt_digest
    )


async def test_queue_counts_destinations_per_hop(store: Store) -> None:
    o = await origin_circular(store, 1, (HQ, HANOI, ROME))
    single = await origin_circular(store, 2, (HQ,))
    await store.accept(record(3), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0)

    async def counts(todo: bool = False) -> dict[str, tuple[str, int, int]]:
        return {
            q.message_id: (q.state, q.dest_open, q.dest_total) for q in await store.queue(todo=todo)
        }

    assert await counts() == {
        o: ("forwarded", 3, 3),
        single: ("forwarded", 1, 1),
        mid(3): ("queued", 0, 0),
    }
    await store.record_receipts([receipt(1, HQ), receipt(2, HQ)], now=T0 + MINUTE)
    assert await counts(todo=True) == {o: ("forwarded", 2, 3), mid(3): ("queued", 0, 0)}
    await store.fail(o, None, reason="cancelled", now=T0 + MINUTE)
    assert (await counts())[o] == ("forwarded", 0, 3)
    assert o not in await counts(todo=True)
    depths = await store.destination_depths()
    assert depths == {("", "delivered"): 2, ("", "failed"): 2}


async def test_destination_depths_count_open_ones_per_site(store: Store) -> None:
    await origin_circular(store, 1)
    h = await hub_circular(store, 2)
    await store.hold(h, now=T0, reason="key", peers=[ROME])
    await store.record_receipts([receipt(1, HQ)], now=T0)
    assert await store.destination_depths() == {
        (HANOI, "forwarded"): 1,
        (HQ, "queued"): 1,
        (HANOI, "queued"): 1,
        (ROME, "held"): 1,
        ("", "delivered"): 1,
    }


async def test_deleting_a_message_removes_its_rows(store: Store) -> None:
    o = await origin_circular(store, 1)
    await store.record_receipts([receipt(1, HQ)], now=T0)
    await store.delete(o, now=T0 + MINUTE, reason="operator")
    assert await store.destinations(o) == []
    assert await store.destination_receipt(o, HQ) is None
    assert await store.destination_depths() == {}
    assert (await store.record_receipts([receipt(1, HANOI)], now=T0))[0].status == "unknown"
