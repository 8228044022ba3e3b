"""Per-destination receipts on PostgreSQL when several gateway processes share the store.

Two stores (two pools, as two processes of one site would have) record receipts for the
same circular at the same time. Whatever the interleaving, a message is completed by
exactly one call (its caller emits ``completed`` once), a destination takes exactly one
receipt, and the hop row is delivered once every destination through it has one. No
timing is asserted: each round races the two calls and checks the invariants.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.store.base import EnvelopeRecord, OutState, ReceiptRecord
from gateway.store.postgres import PostgresStore
from tests.contract.helpers import HANOI, HQ, PARIS, T0, record
from tests.support.pg import PG_DSN

ROUNDS = 12


def circular(n: int) -> EnvelopeRecord:
    """Sent from M-PARIS to HQ and M-HANOI, both through the hub HQ."""
    base = record(n, destinations=(HQ, HANOI))
    return EnvelopeRecord(**{**base.__dict__, "origin": PARIS, "routes": ((HQ, HQ), (HANOI, HQ))})


def receipt(n: int, site: str, tag: int = 0) -> ReceiptRecord:
    r = circular(n)
    return ReceiptRecord(
        r.message_id, site, bytes([tag, n % 256]) * 16, r.digest, b"receipt-%d" % tag
    )


async def test_two_processes_closing_the_last_two_destinations_complete_it_once(
    pg_schema: str,
) -> None:
    a = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    b = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    try:
        for n in range(1, ROUNDS + 1):
            await a.accept(circular(n), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
            at = T0 + timedelta(minutes=n)
            (one,), (two,) = await asyncio.gather(
                a.record_receipts([receipt(n, HQ, 1)], now=at),
                b.record_receipts([receipt(n, HANOI, 2)], now=at),
            )
            assert (one.status, two.status) == ("recorded", "recorded")
            assert [one.completed, two.completed].count(True) == 1, n
            mid = circular(n).message_id
            assert [d.state for d in await a.destinations(mid)] == ["delivered", "delivered"]
            assert [(q.message_id, q.state) for q in await a.queue()] == [
                (mid, OutState.DELIVERED.value)
            ]
            async with a._pool.acquire() as c:
                assert (
                    await c.fetchval(
                        "SELECT completed_at FROM envelopes WHERE message_id = $1", mid
                    )
                    == at
                )
                # one history row per receipt, and one for the hop row
                rows = await c.fetch(
                    "SELECT peer, state FROM history WHERE message_id = $1 AND state = 'delivered'"
                    " ORDER BY peer",
                    mid,
                )
            assert [(r["peer"], r["state"]) for r in rows] == [
                (HQ, "delivered"),
                (HQ, "delivered"),
                (HANOI, "delivered"),
            ]
            await a.delete(mid, now=at, reason="next round")
    finally:
        await a.close()
        await b.close()


async def test_the_same_destination_receipted_by_two_processes_at_once_is_recorded_once(
    pg_schema: str,
) -> None:
    a = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    b = await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=2)
    try:
        for n in range(1, ROUNDS + 1):
            await a.accept(circular(n), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
            (one,), (two,) = await asyncio.gather(
                a.record_receipts([receipt(n, HANOI, 1)], now=T0),
                b.record_receipts([receipt(n, HANOI, 2)], now=T0),
            )
            assert sorted((one.status, two.status)) == ["duplicate", "recorded"]
            first = receipt(n, HANOI, 1 if one.status == "recorded" else 2)
            mid = first.message_id
            dests = {d.site: d for d in await a.destinations(mid)}
            assert dests[HANOI].receipt_digest == first.receipt_digest
            assert await a.destination_receipt(mid, HANOI) == first.data
            assert (dests[HQ].state, dests[HQ].receipt_at) == ("queued", None)
            history = [t for t in await a.history(mid) if t.peer == HANOI]
            assert [t.state for t in history] == ["delivered"]
    finally:
        await a.close()
        await b.close()
