"""Receipts per destination under any ordering of deliveries and receipts (issue 11).

One circular from the origin M-PARIS to n destinations, all through its hub HQ. For each
destination a list of receipt events is drawn (its genuine receipt, another receipt
envelope of it, the first one again, one over a wrong digest, one signed by another
site), plus hop events (the hub acknowledges, the hub is unreachable) and receipts from
a site that is not a destination; one permutation interleaves them all. Each event runs
the production path: the origin's check (gateway/relay/circular.py check_origin_receipt), then
Store.record_receipts, on a fresh store per example.

After every step: the message reads delivered iff every destination has had a good
receipt (never before); each destination keeps the first good receipt; there is exactly
one history ``delivered`` row per receipted destination; ``completed`` was reported
exactly once iff nothing is open (and completed_at is set iff so); a refused receipt
changes neither the destinations nor the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope.receipt import Receipt
from gateway.relay.circular import ReceiptRefused, check_origin_receipt, summarise
from gateway.store.base import ReceiptRecord, Store
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.contract.helpers import HQ, PARIS, T0, mid, record
from tests.support.pg import PG_DSN, pg_test_schema

EVIL = "M-EVIL"
KINDS = ("receipt", "dup", "same", "wrong_digest", "forged")


@dataclass(frozen=True)
class Event:
    kind: str  # forward | defer | foreign | one of KINDS
    site: str = ""
    n: int = 0  # tells apart several events of one kind and site


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[tuple[str, ...], list[Event]]:
    n = draw(st.integers(1, 6))
    sites = tuple(f"M-{chr(ord('A') + i)}" for i in range(n))
    events: list[Event] = []
    for site in sites:
        kinds = draw(st.lists(st.sampled_from(KINDS), max_size=4))
        events += [Event(k, site, i) for i, k in enumerate(kinds)]
    events += [Event("forward", n=i) for i in range(draw(st.integers(0, 2)))]
    events += [Event("defer", n=i) for i in range(draw(st.integers(0, 2)))]
    events += [Event("foreign", EVIL, i) for i in range(draw(st.integers(0, 1)))]
    return sites, draw(st.permutations(events))


async def _completed_at_set(store: Store, message_id: str) -> bool | None:
    """Whether envelopes.completed_at is set (None: not readable on this backend here)."""
    if isinstance(store, SqliteStore):
        row = await store._db.call(
            lambda c: c.execute(
                "SELECT completed_at FROM envelopes WHERE message_id = ?", (message_id,)
            ).fetchone()
        )
        return row[0] is not None
    if isinstance(store, MemoryStore):
        env = store._t.envelopes.get(message_id)
        return env is not None and env.completed_at is not None
    if isinstance(store, PostgresStore):
        async with store._pool.acquire() as conn:
            at = await conn.fetchval(
                "SELECT completed_at FROM envelopes WHERE message_id = $1", message_id
            )
        return at is not None
    return None


async def _run(store: Store, sites: tuple[str, ...], events: list[Event]) -> None:
    m = mid(1)
    rec = replace(record(1, destinations=sites), origin=PARIS, routes=tuple((s, HQ) for s in sites))
    await store.accept(rec, next_hops=[HQ], deliver_here=False, hop_ack=b"ack", now=T0)
    first: dict[str, bytes] = {}  # the receipt digest that stands, per destination
    completions = 0
    for step, ev in enumerate(events, start=1):
        now = T0 + timedelta(seconds=step)
        if ev.kind in ("forward", "defer"):
            claimed = await store.claim(peer=HQ, owner="c", limit=1, lease_seconds=60, now=now)
            if claimed and ev.kind == "forward":
                await store.forwarded([(m, HQ)], owner="c", now=now)
            elif claimed:
                await store.defer(
                    m, HQ, owner="c", reason="connection refused", next_attempt=now, now=now
                )
        else:
            signer = EVIL if ev.kind in ("foreign", "forged") else ev.site
            named = rec.digest if ev.kind != "wrong_digest" else _digest("wrong", ev.site)
            if ev.kind == "same" and ev.site in first:
                digest = first[ev.site]
            elif ev.kind == "receipt":
                digest = _digest("receipt", ev.site)  # the genuine one: the same each time
            else:
                digest = _digest(ev.kind, ev.site, ev.n)
            receipt = Receipt(m, named, ev.site, T0)
            should_refuse = ev.kind in ("foreign", "forged", "wrong_digest") or (
                ev.site in first and first[ev.site] != digest
            )
            before = (await store.destinations(m), await store.history(m))
            sent = (await store.sent_digests([m])).get(m)
            try:
                check_origin_receipt(
                    receipt, signer=signer, receipt_digest=digest, sent=sent, answers=m
                )
            except ReceiptRefused:
                refused = True
            else:
                refused = False
                (outcome,) = await store.record_receipts(
                    [ReceiptRecord(m, signer, digest, named, b"envelope:" + digest)], now=now
                )
                completions += outcome.completed
                assert outcome.status == ("duplicate" if ev.site in first else "recorded")
                first.setdefault(ev.site, digest)
            assert refused == should_refuse
            if refused:
                assert (await store.destinations(m), await store.history(m)) == before
        dests = await store.destinations(m)
        status = summarise(dests)
        everyone = set(first) == set(sites)
        assert (status.status == "delivered") == everyone
        assert (status.delivered, status.total) == (len(first), len(sites))
        assert {d.site: d.receipt_digest for d in dests} == {s: first.get(s) for s in sites}
        history = await store.history(m)
        for site in sites:
            rows = [t for t in history if t.peer == site and t.state == "delivered"]
            assert len(rows) == (1 if site in first else 0)
        assert status.complete == everyone
        assert completions == (1 if everyone else 0)
        assert await _completed_at_set(store, m) in (everyone, None)
        hop = {q.peer: q.state for q in await store.queue()}
        assert (hop[HQ] == "delivered") == everyone


async def _on_memory(sites: tuple[str, ...], events: list[Event]) -> None:
    store = await MemoryStore.open()
    try:
        await _run(store, sites, events)
    finally:
        await store.close()


async def _on_sqlite(sites: tuple[str, ...], events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "store.db")
        try:
            await _run(store, sites, events)
        finally:
            await store.close()


async def _on_postgres(sites: tuple[str, ...], events: list[Event]) -> None:
    async with pg_test_schema() as schema:
        store = await PostgresStore.open(PG_DSN, schema=schema, max_size=2)
        try:
            await _run(store, sites, events)
        finally:
            await store.close()


@pytest.mark.parametrize(
    ("backend_name", "examples"), [("memory", 60), ("sqlite", 60), ("postgres", 15)]
)
def test_any_ordering_of_receipts_keeps_one_receipt_per_destination(
    backend_name: str, examples: int
) -> None:
    run = {"memory": _on_memory, "sqlite": _on_sqlite, "postgres": _on_postgres}[backend_name]

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(scenarios())
    def check(scenario: tuple[tuple[str, ...], list[Event]]) -> None:
        asyncio.run(run(*scenario))

    check()
