"""The Store contract, run against every backend (memory, SQLite file, PostgreSQL schema).

Every test taking ``store`` runs once per backend; the PostgreSQL run is skipped when
the server is unreachable (and fails instead with CI=true, see conftest). What only one
backend has (files, schemas, migrations, several processes) is in
tests/component/test_store_backends.py.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pytest

from gateway.store.base import (
    Acceptance,
    InState,
    OutState,
    Store,
    StoreError,
    Submission,
    WebhookEvent,
)
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.contract.conftest import open_store
from tests.contract.helpers import (
    HANOI,
    HQ,
    PARIS,
    T0,
    expired,
    is_utc,
    mid,
    put,
    record,
    states,
    steps,
)

# -- accepting ----------------------------------------------------------------------


async def test_accept_stores_the_envelope_as_given(store: Store) -> None:
    rec = record(1, destinations=(PARIS, HANOI), received_from="M-ROME", data=b"\xff" * 5000)
    acc = await store.accept(
        rec, next_hops=[PARIS, HANOI], deliver_here=False, hop_ack=None, now=T0
    )
    assert acc == Acceptance(True, None)
    got = await store.get_envelope(mid(1))
    assert got == rec
    assert got is not None and is_utc(got.created) and is_utc(got.expires)
    assert await store.get_envelope(mid(2)) is None
    assert await states(store, mid(1)) == {PARIS: "queued", HANOI: "queued"}
    entry = (await store.queue(peer=PARIS))[0]
    assert entry.size == 5000 and entry.destinations == (PARIS, HANOI)
    assert entry.attempts == 0 and entry.last_reason == ""


async def test_accept_converts_times_to_utc_and_refuses_naive(store: Store) -> None:
    from datetime import timezone

    paris_time = T0.astimezone(timezone(timedelta(hours=1)))
    await store.accept(
        record(1, created=paris_time), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0
    )
    got = await store.get_envelope(mid(1))
    assert got is not None and got.created == T0 and got.created.tzinfo == UTC
    with pytest.raises(StoreError):
        await store.accept(
            record(2, created=T0.replace(tzinfo=None)),
            next_hops=[PARIS],
            deliver_here=False,
            hop_ack=None,
            now=T0,
        )
    with pytest.raises(StoreError):
        await store.claim(
            peer=PARIS, owner="a", limit=1, lease_seconds=1, now=T0.replace(tzinfo=None)
        )


async def test_accept_is_idempotent(store: Store) -> None:
    await put(store, 1, (PARIS,), here=True)
    before = (await store.queue(), await store.history(mid(1)), await store.inbox())
    again = await store.accept(
        record(1, data=b"other bytes"),
        next_hops=[PARIS, HANOI],
        deliver_here=True,
        hop_ack=b"second ack",
        now=T0 + timedelta(minutes=5),
    )
    assert again == Acceptance(new=False, hop_ack=b"ack-1")
    assert (await store.queue(), await store.history(mid(1)), await store.inbox()) == before
    got = await store.get_envelope(mid(1))
    assert got is not None and got.data == record(1).data
    assert await store.depths() == {(PARIS, "queued"): 1}


async def test_accept_many_one_transaction_with_duplicates(store: Store) -> None:
    await put(store, 2)
    batch = [
        (record(1), [PARIS], False, b"a1"),
        (record(2), [PARIS, HANOI], True, b"a2-again"),  # already stored
        (record(3), [HANOI], True, b"a3"),
        (record(1), [HANOI], False, b"a1-again"),  # repeated within the batch
    ]
    results = await store.accept_many(batch, now=T0)
    assert results == [
        Acceptance(True, b"a1"),
        Acceptance(False, b"ack-2"),
        Acceptance(True, b"a3"),
        Acceptance(False, b"a1"),
    ]
    assert await store.depths() == {(PARIS, "queued"): 2, (HANOI, "queued"): 1}
    assert [i.message_id for i in await store.inbox()] == [mid(3)]
    assert await store.accept_many([], now=T0) == []
    if isinstance(store, PostgresStore):
        # One commit: every row the batch wrote carries the same transaction id.
        async with store._pool.acquire() as conn:
            xids = await conn.fetch(
                "SELECT DISTINCT xmin::text FROM envelopes WHERE message_id = ANY($1::text[])",
                [mid(1), mid(3)],
            )
        assert len(xids) == 1


async def test_accept_many_is_all_or_nothing(store: Store) -> None:
    batch = [
        (record(1), [PARIS], False, None),
        (record(2, priority="urgent"), [PARIS], False, None),  # violates the schema
        (record(3), [PARIS], False, None),
    ]
    with pytest.raises(StoreError):
        await store.accept_many(batch, now=T0)
    for n in (1, 2, 3):
        assert await store.get_envelope(mid(n)) is None
    assert await store.queue() == []
    assert await store.history(mid(1)) == []
    # The store is still usable after the rolled-back transaction.
    await put(store, 1)


# -- claiming -----------------------------------------------------------------------


async def test_claim_leases_until_expiry(store: Store) -> None:
    await put(store, 1, (PARIS, HANOI))
    got = await store.claim(peer=PARIS, owner="a", limit=10, lease_seconds=30, now=T0)
    assert [(c.message_id, c.peer, c.attempts) for c in got] == [(mid(1), PARIS, 1)]
    assert got[0].data == record(1).data and got[0].expires == record(1).expires
    assert is_utc(got[0].expires)
    assert await states(store, mid(1)) == {PARIS: "sending", HANOI: "queued"}
    # The lease is live: nobody else gets it, not even at its last instant.
    for later in (1, 29, 30):
        now = T0 + timedelta(seconds=later)
        assert await store.claim(peer=PARIS, owner="b", limit=10, lease_seconds=30, now=now) == []
    assert await store.peers_with_work(now=T0 + timedelta(seconds=30)) == [HANOI]
    # Expired: claimable again, by anyone, one attempt more.
    late = T0 + timedelta(seconds=31)
    assert await store.peers_with_work(now=late) == [HANOI, PARIS]
    again = await store.claim(peer=PARIS, owner="b", limit=10, lease_seconds=30, now=late)
    assert [(c.message_id, c.attempts) for c in again] == [(mid(1), 2)]
    assert steps(await store.history(mid(1)))[-1] == (PARIS, "sending", "lease of a expired")
    assert await store.claim(peer=PARIS, owner="c", limit=10, lease_seconds=30, now=late) == []
    assert await store.claim(peer=HANOI, owner="c", limit=0, lease_seconds=30, now=late) == []


async def test_forwarded_by_a_stale_owner_is_ignored(store: Store) -> None:
    await put(store, 1)
    await store.claim(peer=PARIS, owner="a", limit=1, lease_seconds=10, now=T0)
    late = T0 + timedelta(seconds=11)
    await store.claim(peer=PARIS, owner="b", limit=1, lease_seconds=10, now=late)
    await store.forwarded([(mid(1), PARIS)], owner="a", now=late)  # a lost the lease
    await store.defer(
        mid(1), PARIS, owner="a", reason="x", next_attempt=late + timedelta(hours=1), now=late
    )
    assert await states(store, mid(1)) == {PARIS: "sending"}
    await store.forwarded([(mid(1), PARIS)], owner="b", now=late, reason="hop ack")
    assert await states(store, mid(1)) == {PARIS: "forwarded"}
    assert steps(await store.history(mid(1)))[-1] == (PARIS, "forwarded", "hop ack")
    # Forwarding again (or an unknown pair) changes nothing.
    n = len(await store.history(mid(1)))
    await store.forwarded([(mid(1), PARIS), (mid(9), PARIS)], owner="b", now=late)
    await store.forwarded([], owner="b", now=late)
    assert len(await store.history(mid(1))) == n


async def test_forwarded_marks_a_batch(store: Store) -> None:
    for n in range(1, 6):
        await put(store, n)
    got = await store.claim(peer=PARIS, owner="a", limit=10, lease_seconds=60, now=T0)
    assert len(got) == 5
    await store.forwarded([(c.message_id, c.peer) for c in got[:3]], owner="a", now=T0)
    assert await store.depths() == {(PARIS, "forwarded"): 3, (PARIS, "sending"): 2}


async def test_defer_next_due_and_claim_when_due(store: Store) -> None:
    await put(store, 1)
    await put(store, 2)
    assert await store.next_due(now=T0) is None
    await store.claim(peer=PARIS, owner="a", limit=10, lease_seconds=60, now=T0)
    retry_at = T0 + timedelta(minutes=5)
    await store.defer(mid(1), PARIS, owner="a", reason="503 busy", next_attempt=retry_at, now=T0)
    await store.defer(
        mid(2),
        PARIS,
        owner="a",
        reason="timeout",
        next_attempt=retry_at + timedelta(hours=1),
        now=T0,
    )
    due = await store.next_due(now=T0)
    assert due == retry_at and due is not None and is_utc(due)
    entry = (await store.queue(state="deferred"))[0]
    assert (entry.message_id, entry.next_attempt, entry.last_reason) == (
        mid(1),
        retry_at,
        "503 busy",
    )
    # Not yet due (the lease is gone too: deferring released it).
    early = retry_at - timedelta(seconds=1)
    assert await store.peers_with_work(now=early) == []
    assert await store.claim(peer=PARIS, owner="b", limit=10, lease_seconds=60, now=early) == []
    got = await store.claim(peer=PARIS, owner="b", limit=10, lease_seconds=60, now=retry_at)
    assert [(c.message_id, c.attempts) for c in got] == [(mid(1), 2)]
    assert await store.next_due(now=retry_at) == retry_at + timedelta(hours=1)


async def test_claim_order_is_priority_then_age(store: Store) -> None:
    order = [
        (1, "routine", 0),
        (2, "priority", 5),
        (3, "flash", 9),
        (4, "immediate", 3),
        (5, "routine", -10),  # older routine
        (6, "flash", 1),  # older flash
    ]
    for n, prio, minutes in order:
        await put(store, n, priority=prio, created=T0 + timedelta(minutes=minutes))
    first = await store.claim(peer=PARIS, owner="a", limit=2, lease_seconds=60, now=T0)
    rest = await store.claim(peer=PARIS, owner="a", limit=10, lease_seconds=60, now=T0)
    assert [c.message_id for c in first] == [mid(6), mid(3)]
    assert [c.message_id for c in rest] == [mid(4), mid(2), mid(5), mid(1)]
    assert [q.message_id for q in await store.queue()] == [mid(n) for n in (6, 3, 4, 2, 5, 1)]


# -- failing and expiring -------------------------------------------------------------


async def test_fail_one_peer_or_all_undelivered(store: Store) -> None:
    await put(store, 1, (PARIS, HANOI, "M-ROME"))
    await store.claim(peer="M-ROME", owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), "M-ROME")], owner="a", now=T0)
    await store.fail(mid(1), PARIS, reason="rejected: bad hop", now=T0)
    assert await states(store, mid(1)) == {PARIS: "failed", HANOI: "queued", "M-ROME": "forwarded"}
    await store.fail(mid(1), None, reason="cancelled", now=T0)
    assert await states(store, mid(1)) == {PARIS: "failed", HANOI: "failed", "M-ROME": "forwarded"}
    assert steps(await store.history(mid(1)))[-2:] == [
        (PARIS, "failed", "rejected: bad hop"),
        (HANOI, "failed", "cancelled"),
    ]
    with pytest.raises(StoreError):
        await store.fail(mid(9), None, reason="x", now=T0)


async def test_expire_fails_undelivered_work_of_expired_envelopes(store: Store) -> None:
    soon = T0 + timedelta(hours=1)
    # m1 is relayed (received from a peer): once forwarded, its expiry is the next hop's job.
    await put(store, 1, (PARIS, HANOI, "M-ROME", "M-OSLO"), expires=soon, received_from="HQ")
    await put(store, 2, (PARIS,), expires=T0 + timedelta(days=1))
    await put(store, 3, (HANOI,), expires=soon)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)  # m1 by age
    await store.claim(peer="M-ROME", owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), "M-ROME")], owner="a", now=T0)
    await store.hold(mid(1), now=T0, reason="operator")  # PARIS, HANOI held
    await store.release(mid(1), now=T0, reason="operator")
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.claim(peer="M-OSLO", owner="a", limit=1, lease_seconds=60, now=T0)
    await store.defer(
        mid(1), "M-OSLO", owner="a", reason="busy", next_attempt=T0 + timedelta(days=2), now=T0
    )
    assert await expired(store, soon - timedelta(seconds=1)) == []
    assert await expired(store, soon) == [mid(1), mid(3)]
    assert await states(store, mid(1)) == {
        PARIS: "failed",
        HANOI: "failed",
        "M-ROME": "forwarded",
        "M-OSLO": "failed",
    }
    assert await states(store, mid(2)) == {PARIS: "queued"}
    assert {q.last_reason for q in await store.queue(state="failed")} == {"expired"}
    assert await expired(store, soon + timedelta(days=5)) == [mid(2)]
    assert await expired(store, soon + timedelta(days=5)) == []


async def test_expire_fails_a_message_sent_from_here_that_never_got_a_receipt(
    store: Store,
) -> None:
    soon = T0 + timedelta(hours=1)
    await put(store, 1, (HQ,), expires=soon)  # originated here (received_from None)
    await put(store, 2, (HQ,), expires=soon)
    await store.claim(peer=HQ, owner="a", limit=2, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), HQ), (mid(2), HQ)], owner="a", now=T0)
    assert await store.delivered(mid(2), receipt=b"receipt", now=T0)
    assert await expired(store, soon) == [mid(1)]
    assert await states(store, mid(1)) == {HQ: "failed"}
    assert await states(store, mid(2)) == {HQ: "delivered"}


# -- receipts -------------------------------------------------------------------------


async def test_delivered_stores_the_receipt_once(store: Store) -> None:
    await put(store, 1, (HQ,))  # at the origin: the one delivery goes to HQ
    await store.claim(peer=HQ, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.forwarded([(mid(1), HQ)], owner="a", now=T0)
    assert await store.receipt(mid(1)) is None
    t1 = T0 + timedelta(minutes=3)
    assert await store.delivered(mid(1), receipt=b"signed receipt", now=t1) is True
    assert await store.receipt(mid(1)) == b"signed receipt"
    assert await states(store, mid(1)) == {HQ: "delivered"}
    assert steps(await store.history(mid(1)))[-1] == (HQ, "delivered", "receipt")
    assert await store.delivered(mid(1), receipt=b"another", now=t1) is False
    assert await store.receipt(mid(1)) == b"signed receipt"
    assert await store.receipt(mid(9)) is None
    with pytest.raises(StoreError):
        await store.delivered(mid(9), receipt=b"r", now=t1)


async def test_delivered_without_deliveries_still_records_history(store: Store) -> None:
    await put(store, 1, (), here=True)
    assert await store.delivered(mid(1), receipt=b"r", now=T0) is True
    assert steps(await store.history(mid(1)))[-1] == (None, "delivered", "receipt")


# -- operator -------------------------------------------------------------------------


async def test_hold_release_retry_delete_counts(store: Store) -> None:
    peers = (PARIS, HANOI, "M-ROME", "M-OSLO")
    await put(store, 1, peers, here=True)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.claim(peer="M-ROME", owner="a", limit=1, lease_seconds=60, now=T0)
    await store.claim(peer="M-OSLO", owner="a", limit=1, lease_seconds=60, now=T0)
    await store.defer(
        mid(1), "M-ROME", owner="a", reason="busy", next_attempt=T0 + timedelta(hours=1), now=T0
    )
    await store.forwarded([(mid(1), "M-OSLO")], owner="a", now=T0)
    # queued, sending, deferred are held; forwarded is not.
    assert await store.hold(mid(1), now=T0, reason="legal hold") == 3
    assert await store.hold(mid(1), now=T0, reason="again") == 0
    assert await store.claim(peer=PARIS, owner="b", limit=5, lease_seconds=60, now=T0) == []
    late = T0 + timedelta(days=1)
    assert await store.peers_with_work(now=late) == []
    # The sender that had HANOI lost it to the hold.
    await store.forwarded([(mid(1), HANOI)], owner="a", now=T0)
    assert (await states(store, mid(1)))[HANOI] == "held"
    assert await store.release(mid(1), now=T0, reason="lifted") == 3
    assert await store.release(mid(1), now=T0, reason="again") == 0
    assert await states(store, mid(1)) == {
        PARIS: "queued",
        HANOI: "queued",
        "M-ROME": "queued",
        "M-OSLO": "forwarded",
    }
    # retry: deferred and failed go back to queued, due now.
    await store.fail(mid(1), PARIS, reason="rejected", now=T0)
    await store.claim(peer=HANOI, owner="a", limit=1, lease_seconds=60, now=T0)
    await store.defer(
        mid(1), HANOI, owner="a", reason="busy", next_attempt=T0 + timedelta(hours=1), now=T0
    )
    t1 = T0 + timedelta(minutes=1)
    assert await store.retry(mid(1), now=t1, reason="operator retry") == 2
    assert await store.retry(mid(1), now=t1, reason="again") == 0
    queued = {q.peer: q for q in await store.queue(state="queued")}
    assert set(queued) == {PARIS, HANOI, "M-ROME"}
    assert queued[PARIS].next_attempt == t1 and queued[HANOI].next_attempt == t1
    assert queued[PARIS].last_reason == "operator retry"
    assert await store.hold(mid(9), now=T0, reason="x") == 0
    # delete: everything but the history goes.
    n_history = len(await store.history(mid(1)))
    assert await store.delete(mid(1), now=t1, reason="purge") == 4
    assert await store.get_envelope(mid(1)) is None
    assert await store.queue() == [] and await store.inbox() == [] and await store.depths() == {}
    history = await store.history(mid(1))
    assert len(history) == n_history + 1
    assert steps(history)[-1] == (None, "deleted", "purge")
    assert await store.delete(mid(1), now=t1, reason="again") == 0
    assert len(await store.history(mid(1))) == n_history + 1
    # The id stays dead until it expires: a replayed copy is not stored again (a
    # tombstone; tests/contract/test_tombstones.py).
    again = await store.accept(
        record(1), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=t1
    )
    assert again.deleted and not again.new and await store.get_envelope(mid(1)) is None


async def test_queue_filters(store: Store) -> None:
    await put(store, 1, (PARIS, HANOI))
    await put(store, 2, (PARIS,))
    await store.claim(peer=PARIS, owner="a", limit=1, lease_seconds=60, now=T0)
    assert [(q.message_id, q.peer) for q in await store.queue(peer=PARIS)] == [
        (mid(1), PARIS),
        (mid(2), PARIS),
    ]
    assert [(q.message_id, q.peer) for q in await store.queue(state="queued")] == [
        (mid(1), HANOI),
        (mid(2), PARIS),
    ]
    assert [q.message_id for q in await store.queue(peer=PARIS, state=OutState.SENDING)] == [mid(1)]
    assert await store.queue(peer="M-NOWHERE") == []


async def test_depths(store: Store) -> None:
    assert await store.depths() == {}
    await put(store, 1, (PARIS, HANOI))
    await put(store, 2, (PARIS,))
    await put(store, 3, (PARIS,))
    await store.claim(peer=PARIS, owner="a", limit=2, lease_seconds=60, now=T0)
    await store.fail(mid(3), None, reason="x", now=T0)
    assert await store.depths() == {
        (PARIS, "sending"): 2,
        (PARIS, "failed"): 1,
        (HANOI, "queued"): 1,
    }


# -- history --------------------------------------------------------------------------


async def test_history_records_every_transition_in_order(store: Store) -> None:
    t = [T0 + timedelta(minutes=i) for i in range(12)]
    await put(store, 1, (PARIS,), here=True, now=t[0])
    await store.claim(peer=PARIS, owner="a", limit=1, lease_seconds=30, now=t[1])
    await store.defer(mid(1), PARIS, owner="a", reason="busy", next_attempt=t[3], now=t[2])
    await store.claim(peer=PARIS, owner="a", limit=1, lease_seconds=30, now=t[3])
    await store.claim(peer=PARIS, owner="b", limit=1, lease_seconds=30, now=t[4])  # expired
    await store.hold(mid(1), now=t[5], reason="check")
    await store.release(mid(1), now=t[6], reason="ok")
    await store.claim(peer=PARIS, owner="c", limit=1, lease_seconds=30, now=t[7])
    await store.forwarded([(mid(1), PARIS)], owner="c", now=t[8], reason="hop ack")
    await store.inbound_set(mid(1), InState.AVAILABLE, reason="decrypted", now=t[9])
    await store.inbound_set(mid(1), InState.ACKED, reason="fetched", now=t[10])
    await store.delivered(mid(1), receipt=b"r", now=t[11])
    history = await store.history(mid(1))
    assert steps(history) == [
        (PARIS, "queued", ""),
        (None, "received", ""),
        (PARIS, "sending", ""),
        (PARIS, "deferred", "busy"),
        (PARIS, "sending", ""),
        (PARIS, "sending", "lease of a expired"),
        (PARIS, "held", "check"),
        (PARIS, "queued", "ok"),
        (PARIS, "sending", ""),
        (PARIS, "forwarded", "hop ack"),
        (None, "available", "decrypted"),
        (None, "acked", "fetched"),
        (PARIS, "delivered", "receipt"),
    ]
    assert [h.at for h in history] == [t[0], t[0], *t[1:12]]
    assert all(is_utc(h.at) for h in history)
    assert await store.history(mid(9)) == []


# -- inbound --------------------------------------------------------------------------


async def test_inbox_and_inbound_set(store: Store) -> None:
    await put(store, 3, (), here=True, now=T0 + timedelta(minutes=2))
    await put(store, 1, (), here=True, now=T0)
    await put(store, 2, (PARIS,), here=False, now=T0 + timedelta(minutes=1))
    await put(store, 4, (), here=True, now=T0 + timedelta(minutes=3), data=b"x" * 77)
    inbox = await store.inbox()
    assert [i.message_id for i in inbox] == [mid(1), mid(3), mid(4)]
    assert inbox[0].origin == HQ and inbox[0].state == "received" and inbox[0].received == T0
    assert is_utc(inbox[0].received) and inbox[2].size == 77
    assert [i.message_id for i in await store.inbox(limit=2)] == [mid(1), mid(3)]
    await store.inbound_set(mid(3), InState.AVAILABLE, reason="ready", now=T0)
    assert [i.message_id for i in await store.inbox(state=InState.AVAILABLE)] == [mid(3)]
    assert [i.message_id for i in await store.inbox(state=InState.RECEIVED)] == [mid(1), mid(4)]
    assert await store.inbox(state=InState.ACKED) == []
    assert steps(await store.history(mid(3)))[-1] == (None, "available", "ready")
    # Setting the same state again is not a change and records nothing.
    n = len(await store.history(mid(3)))
    await store.inbound_set(mid(3), InState.AVAILABLE, reason="again", now=T0)
    assert len(await store.history(mid(3))) == n
    with pytest.raises(StoreError):
        await store.inbound_set(mid(2), InState.ACKED, reason="no inbound item", now=T0)
    with pytest.raises(StoreError):
        await store.inbound_set(mid(9), InState.ACKED, reason="unknown", now=T0)


async def test_inbox_pages_after_a_cursor(store: Store) -> None:
    await put(store, 2, (), here=True, now=T0)
    await put(store, 1, (), here=True, now=T0)  # same instant: the message id breaks the tie
    await put(store, 3, (), here=True, now=T0 + timedelta(microseconds=1))
    first = await store.inbox(limit=2)
    assert [i.message_id for i in first] == [mid(1), mid(2)]
    rest = await store.inbox(limit=2, after=(first[-1].received, first[-1].message_id))
    assert [i.message_id for i in rest] == [mid(3)]
    assert await store.inbox(after=(rest[-1].received, rest[-1].message_id)) == []


# -- integrators, submissions, webhooks (the HTTP API) -----------------------------------


async def test_integrators_add_list_revoke(store: Store) -> None:
    await store.integrator_add(
        "erp",
        token_sha256="a" * 64,
        webhook_url="http://127.0.0.1:1/h",
        webhook_secret="whsec_x",
        now=T0,
    )
    await store.integrator_add(
        "dms", token_sha256="b" * 64, webhook_url=None, webhook_secret=None, now=T0
    )
    with pytest.raises(StoreError, match="exists"):
        await store.integrator_add(
            "erp", token_sha256="c" * 64, webhook_url=None, webhook_secret=None, now=T0
        )
    listed = await store.integrators()
    assert [(i.name, i.webhook_url, i.revoked) for i in listed] == [
        ("dms", None, None),
        ("erp", "http://127.0.0.1:1/h", None),
    ]
    assert is_utc(listed[0].created)
    found = await store.integrator_for_token("a" * 64)
    assert found is not None and found.name == "erp" and found.webhook_secret == "whsec_x"
    assert await store.integrator_for_token("f" * 64) is None
    assert await store.integrator_revoke("erp", now=T0 + timedelta(hours=1))
    assert not await store.integrator_revoke("erp", now=T0 + timedelta(hours=2))
    assert not await store.integrator_revoke("nobody", now=T0)
    assert await store.integrator_for_token("a" * 64) is None
    revoked = {i.name: i.revoked for i in await store.integrators()}
    assert revoked["erp"] == T0 + timedelta(hours=1) and revoked["dms"] is None
    with pytest.raises(StoreError, match="exists"):  # a revoked name is never reused
        await store.integrator_add(
            "erp", token_sha256="d" * 64, webhook_url=None, webhook_secret=None, now=T0
        )


async def test_submission_reserve_is_idempotent_by_key(store: Store) -> None:
    await store.integrator_add(
        "erp", token_sha256="a" * 64, webhook_url=None, webhook_secret=None, now=T0
    )
    first = Submission(mid(1), "erp", "key-1", "f1", T0)
    forget = T0 - timedelta(days=1)
    assert await store.submission_reserve(first, forget_before=forget) == first
    again = Submission(mid(2), "erp", "key-1", "f2", T0 + timedelta(seconds=1))
    assert await store.submission_reserve(again, forget_before=forget) == first
    assert await store.submission(mid(2)) is None
    # Without a key every submission is new; the message keeps its integrator.
    for n in (3, 4):
        free = Submission(mid(n), "erp", None, "f", T0)
        assert await store.submission_reserve(free, forget_before=forget) == free
    got = await store.submission(mid(4))
    assert got is not None and got.integrator == "erp" and got.idempotency_key is None
    # Once the key has expired it is released, and the old message keeps its row.
    later = Submission(mid(5), "erp", "key-1", "f5", T0 + timedelta(days=2))
    released = await store.submission_reserve(later, forget_before=T0 + timedelta(days=1))
    assert released == later
    old = await store.submission(mid(1))
    assert old is not None and old.idempotency_key is None and is_utc(old.created)


async def test_webhook_outbox_claim_settle_and_lease(store: Store) -> None:
    await store.integrator_add(
        "erp",
        token_sha256="a" * 64,
        webhook_url="http://h/1",
        webhook_secret="whsec_s",
        now=T0,
    )
    await store.integrator_add(
        "old",
        token_sha256="b" * 64,
        webhook_url="http://h/2",
        webhook_secret="whsec_t",
        now=T0,
    )
    events = [
        WebhookEvent("wh-1", "erp", "delivered", mid(1), b'{"a":1}'),
        WebhookEvent("wh-2", "old", "received", mid(2), b'{"b":2}'),
    ]
    await store.webhook_enqueue(events, now=T0)
    await store.webhook_enqueue(events[:1], now=T0)  # a repeated id is stored once
    await store.integrator_revoke("old", now=T0)
    claimed = await store.webhook_claim(owner="a", limit=10, lease_seconds=30, now=T0)
    assert [
        (c.event, c.attempts, c.url, c.secret)
        for c in sorted(claimed, key=lambda c: c.event.webhook_id)
    ] == [
        (events[0], 1, "http://h/1", "whsec_s"),
        (events[1], 1, None, None),  # revoked: nowhere to send it
    ]
    assert await store.webhook_claim(owner="b", limit=10, lease_seconds=30, now=T0) == []
    # An expired lease makes it claimable again; the old owner can no longer settle it.
    later = T0 + timedelta(seconds=31)
    again = await store.webhook_claim(owner="b", limit=1, lease_seconds=30, now=later)
    assert len(again) == 1 and again[0].attempts == 2
    wid = again[0].event.webhook_id
    await store.webhook_settle(wid, owner="a", state="sent", reason="stale", now=later)
    retry_at = later + timedelta(seconds=5)
    await store.webhook_settle(
        wid, owner="b", state="pending", reason="HTTP 503", now=later, next_attempt=retry_at
    )
    assert await store.webhook_claim(owner="b", limit=10, lease_seconds=30, now=later) != []
    due = await store.webhook_claim(owner="c", limit=10, lease_seconds=30, now=retry_at)
    assert [c.event.webhook_id for c in due] == [wid] and due[0].attempts == 3
    await store.webhook_settle(wid, owner="c", state="sent", reason="HTTP 204", now=retry_at)
    entries = {e.webhook_id: e for e in await store.webhooks()}
    assert entries[wid].state == "sent" and entries[wid].last_reason == "HTTP 204"
    assert [e.webhook_id for e in await store.webhooks(message_id=mid(1))] == ["wh-1"]
    with pytest.raises(StoreError):
        await store.webhook_settle(wid, owner="c", state="pending", reason="", now=T0)
    with pytest.raises(StoreError):
        await store.webhook_settle(wid, owner="c", state="bogus", reason="", now=T0)


# -- health ---------------------------------------------------------------------------


async def test_durability_and_ping(store: Store) -> None:
    await store.ping()
    d = await store.durability()
    if isinstance(store, MemoryStore):
        assert d["backend"] == "memory" and d["durable"].startswith("no")
    elif isinstance(store, SqliteStore):
        assert d["backend"] == "sqlite"
        assert d["journal_mode"] == "wal"
        assert d["synchronous"] == "FULL" and d["synchronous_level"] == "2"
        assert d["foreign_keys"] == "on"
    else:
        assert d["backend"] == "postgresql"
        assert d["synchronous_commit"] == "on"
        assert d["fsync"] == "on"
        assert d["schema"] == store.schema


async def test_a_closed_store_refuses_calls(backend: str, sqlite_path: Path) -> None:
    async with open_store(backend, sqlite_path) as s:
        await s.close()
        await s.close()  # idempotent
        with pytest.raises(StoreError):
            await s.ping()


async def test_a_negative_limit_is_refused(store: Store) -> None:
    """A listing's limit below 0 is an error on every backend, not "no limit"."""
    await put(store, 1, here=True)
    for listing in (
        lambda: store.inbox(limit=-1),
        lambda: store.audit_entries(limit=-1),
        lambda: store.audit_checkpoints(limit=-1),
        lambda: store.timestamp_pending(limit=-1),
    ):
        with pytest.raises(StoreError, match="limit must not be negative"):
            await listing()
    assert len(await store.inbox(limit=0)) == 0
    assert len(await store.inbox(limit=1)) == 1
