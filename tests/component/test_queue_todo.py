"""What is still to do, on both backends: ``Store.queue(todo=True)`` (valise queue list's
default), the rows ``queue list`` and ``inbox list`` show, and the doctor's queue
checks read from a real store."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from config.sections import OpsSection, RelaySection, SiteSection, StoreSection
from config.site import SiteConfig
from crypto.keys import DecryptionKey
from gateway.cli.views import inbox_rows, queue_rows, received_summary
from gateway.service.doctor_checks import Status
from gateway.service.doctor_queue import queue_checks
from gateway.site.context import SiteContext
from gateway.store.base import Store
from routing.directory import Directory, KeyState, SiteEntry
from tests.contract.helpers import PARIS, T0, mid, put, record

OWNER = "test"
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
NO_KEY = "receipt deferred: M-PARIS has no active encryption key"


async def _forward(store: Store, n: int, peer: str, now: datetime) -> None:
    assert [c.message_id for c in await _claim(store, peer, now)] == [mid(n)]
    await store.forwarded([(mid(n), peer)], owner=OWNER, now=now)


async def _claim(store: Store, peer: str, now: datetime) -> list:  # type: ignore[type-arg]
    return await store.claim(peer=peer, owner=OWNER, limit=10, lease_seconds=60, now=now)


async def _every_state(store: Store) -> None:
    """One delivery in each state, each to its own next hop P<n>: 1 queued, 2 sending,
    3 deferred, 4 held, 5 failed, 6 forwarded from here (no receipt yet), 7 relayed and
    forwarded on, 8 delivered, 9 a receipt sent from here and forwarded."""
    for n in range(1, 9):
        await put(store, n, (f"P{n}",), received_from="M-ROME" if n == 7 else None)
    receipt = replace(record(9), doc_class="receipt", destinations=(PARIS,))
    await store.accept(receipt, next_hops=["P9"], deliver_here=False, hop_ack=None, now=T0)
    await _claim(store, "P2", T0 + MINUTE)
    await _claim(store, "P3", T0 + MINUTE)
    await store.defer(
        mid(3),
        "P3",
        owner=OWNER,
        reason="HQ answered 503",
        next_attempt=T0 + HOUR,
        now=T0 + 2 * MINUTE,
    )
    await store.hold(mid(4), now=T0 + MINUTE, reason="operator: looking")
    await store.fail(mid(5), None, reason="refused by P5: no", now=T0 + 2 * MINUTE)
    for n in (6, 7, 8, 9):
        await _forward(store, n, f"P{n}", T0 + MINUTE)
    assert await store.delivered(mid(8), receipt=b"receipt", now=T0 + 3 * MINUTE)


async def test_todo_is_every_undelivered_delivery_and_forwarded_mail_awaiting_its_receipt(
    store: Store,
) -> None:
    await _every_state(store)
    todo = {q.message_id: q.state for q in await store.queue(todo=True)}
    assert todo == {
        mid(1): "queued",
        mid(2): "sending",
        mid(3): "deferred",
        mid(4): "held",
        mid(5): "failed",
        mid(6): "forwarded",
    }
    every = {q.message_id: q.state for q in await store.queue()}
    assert every[mid(7)] == "forwarded" and every[mid(8)] == "delivered"
    assert every[mid(9)] == "forwarded" and len(every) == 9
    # The other filters still narrow, with or without todo.
    assert [q.message_id for q in await store.queue(state="forwarded")] == [
        mid(6),
        mid(7),
        mid(9),
    ]
    assert [q.message_id for q in await store.queue(state="forwarded", todo=True)] == [mid(6)]
    assert [q.message_id for q in await store.queue(peer="P7", todo=True)] == []
    # When each was taken here and last changed.
    deferred = next(q for q in await store.queue(todo=True) if q.message_id == mid(3))
    assert deferred.accepted == T0 and deferred.updated == T0 + 2 * MINUTE


def _ctx(store: Store, folder: Path, directory: Directory | None) -> SiteContext:
    view = SimpleNamespace(
        store=store, directory=directory, config=SimpleNamespace(directory=folder)
    )
    return cast(SiteContext, view)


async def test_queue_list_rows_follow_the_filter(store: Store, tmp_path: Path) -> None:
    await _every_state(store)
    ctx = _ctx(store, tmp_path, None)
    shown = await queue_rows(ctx, every=False, peer=None, state=None)
    assert {r["id"] for r in shown} == {mid(n) for n in range(1, 7)}
    everything = await queue_rows(ctx, every=True, peer=None, state=None)
    assert {r["id"] for r in everything} == {mid(n) for n in range(1, 10)}
    # --state shows that state whole, done or not.
    forwarded = await queue_rows(ctx, every=False, peer=None, state="forwarded")
    assert {r["id"] for r in forwarded} == {mid(6), mid(7), mid(9)}
    row = next(r for r in shown if r["id"] == mid(3))
    assert row["reason"] == "HQ answered 503" and row["peer"] == "P3"


def _directory(origin_keys: tuple[KeyState, ...]) -> Directory:
    keys = tuple((DecryptionKey.generate().public, s) for s in origin_keys)
    return Directory(1, T0, "HQ", (SiteEntry(PARIS, "https://paris", (), keys, ()),))


def _config(folder: Path, warn_s: float) -> SiteConfig:
    site = SiteSection("M-HANOI", "mission", "127.0.0.1:1", "https://x", "HQ", "https://y")
    return SiteConfig(
        directory=folder,
        site=site,
        store=StoreSection(),
        ops=OpsSection(),
        relay=RelaySection(warn_deferred_seconds=warn_s),
    )


async def _received_from_paris(store: Store, n: int, at: datetime) -> None:
    doc = replace(record(n), origin=PARIS, destinations=("M-HANOI",), received_from="HQ")
    await store.accept(doc, next_hops=[], deliver_here=True, hop_ack=b"ack", now=at)


async def test_a_deferred_receipt_shows_in_inbox_list_with_its_reason(
    store: Store, tmp_path: Path
) -> None:
    await _received_from_paris(store, 20, T0)
    revoked = _directory((KeyState.REVOKED,))
    rows = await inbox_rows(_ctx(store, tmp_path, revoked))
    assert [(r["id"], r["state"], r["note"]) for r in rows] == [(mid(20), "received", NO_KEY)]
    summary = await received_summary(_ctx(store, tmp_path, revoked))
    assert summary is not None and "1 with their receipt deferred" in summary
    assert "M-PARIS has no active encryption key" in summary
    # Once the directory lists a key, the reason is no longer the key.
    published = _directory((KeyState.REVOKED, KeyState.ACTIVE))
    rows = await inbox_rows(_ctx(store, tmp_path, published))
    assert rows[0]["note"].startswith("not opened yet")


async def test_the_doctor_warns_about_what_waits_too_long(store: Store, tmp_path: Path) -> None:
    await _every_state(store)
    await _received_from_paris(store, 20, T0)
    revoked = _directory((KeyState.REVOKED,))
    config = _config(tmp_path, 3600)

    soon = {c.name: c for c in await queue_checks(store, config, revoked, T0 + 30 * MINUTE)}
    assert {c.status for c in soon.values()} == {Status.OK, Status.WARN}
    assert soon["queue failed"].status is Status.WARN  # failed 28 minutes ago
    for name in ("queue deferred", "receipts awaited", "inbox waiting"):
        assert soon[name].status is Status.OK, soon[name]

    later = {c.name: c for c in await queue_checks(store, config, revoked, T0 + 3 * HOUR)}
    deferred = later["queue deferred"]
    assert deferred.status is Status.WARN
    assert f"1 message deferred longer than 60 min; oldest {mid(3)} to P3" in deferred.detail
    assert "HQ answered 503" in deferred.detail
    failed = later["queue failed"]
    assert failed.status is Status.WARN and mid(5) in failed.detail
    assert "valise queue list --state failed" in failed.detail
    awaited = later["receipts awaited"]
    assert awaited.status is Status.WARN and mid(6) in awaited.detail
    assert mid(7) not in awaited.detail  # relayed: done here
    waiting = later["inbox waiting"]
    assert waiting.status is Status.WARN
    assert f"oldest {mid(20)} from M-PARIS, 3 h: {NO_KEY}" in waiting.detail

    # A day on, the failure is old news; the rest still waits.
    next_day = {
        c.name: c for c in await queue_checks(store, config, revoked, T0 + timedelta(days=2))
    }
    assert next_day["queue failed"].status is Status.OK
    assert next_day["queue deferred"].status is Status.WARN


def store_tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the SQLite store at ``path``, read-only (for a check
    that a command changed nothing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
    finally:
        conn.close()


def changed_only_by_its_audit_record(
    before: dict[str, list[tuple[object, ...]]],
    after: dict[str, list[tuple[object, ...]]],
    action: str,
) -> None:
    """Assert ``after`` is ``before`` but for the audit entries recording the command
    itself (every valise command is audited: gateway/cli/record.py)."""
    assert set(after) == set(before)
    for table in before:
        if table != "audit":
            assert after[table] == before[table], table
    old, new = before["audit"], after["audit"]
    assert new[: len(old)] == old
    added = new[len(old) :]
    assert added and all(row[3] == action for row in added), added
