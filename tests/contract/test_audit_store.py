"""The store's audit log on every backend: every history row gets its entry in the same
call, chained and hashed as gateway/store/audit_chain.py says (so that the three
backends write the same chain for the same history), checkpoints and witness rows are
written once, and a call that fails leaves no entry."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    UNKNOWN_SITE,
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
    chain,
    hash_of,
    history_detail,
)
from gateway.store.base import ReceiptRecord, Store, StoreError
from tests.contract.helpers import HQ, PARIS, T0, mid, put, record

SITE = "M-PARIS"


def _linked(entries: list[AuditEntry]) -> None:
    """seq from 1 without gaps, each entry's prev the hash before it, each hash its own."""
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    prev = ZERO_HASH
    for e in entries:
        assert e.prev == prev and e.hash == hash_of(e), e
        prev = e.hash


async def _traffic(store: Store) -> None:
    await put(store, 1, (PARIS, HQ), here=True)
    await store.claim(peer=PARIS, owner="a", limit=5, lease_seconds=60, now=T0)
    await store.audit_identify(SITE)
    await store.forwarded([(mid(1), PARIS)], owner="a", now=T0 + timedelta(seconds=1))
    await store.hold(mid(1), now=T0 + timedelta(seconds=2), reason='a "quoted"\nreason é')
    await store.delivered(mid(1), receipt=b"r", now=T0 + timedelta(seconds=3))


async def test_history_rows_are_chained_as_the_sql_trigger_chains_them(store: Store) -> None:
    assert await store.audit_head() is None and await store.audit_entries() == []
    await _traffic(store)
    entries = await store.audit_entries()
    _linked(entries)
    # Each entry is its history row's, in the order they were written: action = state,
    # subject = message id, detail = (history id, peer, reason) as canonical JSON; the
    # actor is "site" until the store is told its site's id.
    history = await store.history(mid(1))
    assert len(entries) == len(history)
    want = []
    prev = ZERO_HASH
    for n, (e, h) in enumerate(zip(entries, history, strict=True), start=1):
        assert json.loads(e.detail)["history"] == str(n)
        actor = UNKNOWN_SITE if e.seq <= 4 else SITE  # queued x2, received, sending
        draft = AuditDraft(h.at, actor, h.state, mid(1), "ok", history_detail(n, h.peer, h.reason))
        want.append(chain(draft, n, prev))
        prev = want[-1].hash
    assert entries == want
    assert await store.audit_head() == entries[-1]
    assert await store.audit_entries(after=2, limit=2) == entries[2:4]
    assert await store.audit_entries(after=len(entries)) == []


async def test_appended_entries_and_checkpoints_extend_the_one_chain(store: Store) -> None:
    await put(store, 1)
    first = await store.audit_append(AuditDraft(T0, "operator", "cli.hold", mid(1), "ok", "{}"))
    assert first.seq == 2 and first == await store.audit_head()
    cp = AuditCheckpoint(first.seq, first.hash, T0, "key-1", b"s" * 64)
    record_draft = AuditDraft(T0, SITE, CHECKPOINT_ACTION, "2", "ok", "{}")
    assert await store.audit_checkpoint_add(cp, record_draft)
    assert not await store.audit_checkpoint_add(cp, record_draft)  # one per seq
    with pytest.raises(StoreError):
        await store.audit_checkpoint_add(
            AuditCheckpoint(9, first.hash, T0, "key-1", b"s" * 64),
            AuditDraft(T0, SITE, "not.a.checkpoint", "9", "ok", "{}"),
        )
    later = AuditCheckpoint(3, b"\x01" * 32, T0 + timedelta(hours=1), "key-1", b"t" * 64, b"tok")
    assert await store.audit_checkpoint_add(later, record_draft)
    entries = await store.audit_entries()
    _linked(entries)
    assert [e.action for e in entries] == ["queued", "cli.hold", *[CHECKPOINT_ACTION] * 2]
    assert await store.audit_checkpoints() == [cp, later]
    assert await store.audit_checkpoints(after=2) == [later]
    assert await store.audit_checkpoints(limit=1) == [cp]
    assert await store.audit_last_checkpoint() == later


async def test_a_failed_call_leaves_no_entry(store: Store) -> None:
    await put(store, 1)
    head = await store.audit_head()
    with pytest.raises(StoreError):
        await store.accept_many(
            [
                (record(2), [PARIS], False, None),
                (record(3, priority="urgent"), [PARIS], False, None),
            ],
            now=T0,
        )
    with pytest.raises(StoreError):
        await store.delivered(mid(1), receipt=b"r", now=T0, site="M-NOWHERE")
    assert await store.audit_head() == head
    # The chain goes on from where it was.
    await put(store, 4)
    _linked(await store.audit_entries())


async def test_the_witness_row_moves_only_from_the_seq_it_was_read_at(store: Store) -> None:
    w = Witness(SITE, 5, b"\x05" * 32, T0, "k", b"s", HQ, T0, "hk", b"hs")
    note = AuditDraft(T0, HQ, "audit.witness", SITE, "ok", "{}")
    assert await store.audit_witness(SITE) is None
    assert await store.audit_witness_save(w, expect_seq=None, entry=note)
    assert not await store.audit_witness_save(w, expect_seq=None)  # there is a row now
    assert await store.audit_witness(SITE) == w
    moved = Witness(
        SITE, 9, b"\x09" * 32, T0, "k", b"s", HQ, T0, "hk", b"hs", "fork", 8, b"\x08", T0
    )
    assert not await store.audit_witness_save(moved, expect_seq=4, entry=note)
    assert await store.audit_witness_save(moved, expect_seq=5)
    assert await store.audit_witness(SITE) == moved
    assert await store.audit_witness("M-OTHER") is None
    # One entry: the first save's (a refused save appends nothing).
    assert [e.action for e in await store.audit_entries()] == ["audit.witness"]


async def test_receipts_and_failures_are_audited_per_destination(store: Store) -> None:
    rec = record(1, destinations=(HQ, PARIS))
    routed = type(rec)(**{**rec.__dict__, "routes": ((HQ, HQ), (PARIS, HQ))})
    await store.accept(routed, next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0)
    receipt = ReceiptRecord(mid(1), HQ, b"\x07" * 32, rec.digest, b"env")
    await store.record_receipts([receipt], now=T0)
    await store.fail(mid(1), None, reason="cancelled", now=T0)
    entries = await store.audit_entries()
    _linked(entries)
    rows = [(e.action, json.loads(e.detail).get("peer")) for e in entries]
    assert rows == [("queued", HQ), ("delivered", HQ), ("failed", HQ), ("failed", PARIS)]
