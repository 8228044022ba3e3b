"""Review 11d: the events of the first start's re-check are lost for good if the start
stops between the settle's commit and the last event.

gateway/relay/kept_receipts.py settles every waiting row in ONE transaction, then emits
``delivered`` (and ``completed``) for each row it closed, one by one; the webhook
subscriber enqueues each in its own store transaction. The module rules accept that
"a crash after the commit and before the events loses them (as for local
delivery)", but here the window is the whole store, not one batch: on a live network
M-PARIS's serve was SIGKILLed ~1.5 s into this loop with 1500 waiting rows, all 1500
rows were delivered and only 62 ``delivered`` and 61 ``completed`` webhooks were ever
queued; the next start finds nothing waiting and emits nothing. ``valise serve``
installs its SIGTERM/SIGINT handlers only after the re-check, so a plain
``systemctl stop`` / Ctrl-C during that loop does the same.

Here a stop arrives (KeyboardInterrupt: SIGINT's exception) while the first event is
delivered; the next start must still emit the events of the rows the first one closed.

Fixed (gateway/relay/kept_journal.py): the rows about to close are journaled in the site
folder before the commit; the next start emits their events (at least once). Also
here: a start stopped before its commit leaves a journal whose rows are not delivered
(nothing is emitted from it, the re-check redoes them, each event once); a stop in the
middle of the events (the rows already out are not emitted again); and journals that
are not this module's (garbage, another site's, a link, a folder, a FIFO, readable by
others, too big, ids or marks invalid, rows not delivered) are refused or emit
nothing, without stopping the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.relay import kept_journal
from gateway.relay.kept_receipts import recheck_kept_receipts
from gateway.runtime.events import Event, EventBus
from gateway.site.context import load_site
from tests.component.test_migration_v11 import (
    HANOI,
    HQ,
    PARIS,
    T0,
    OldStore,
    digest,
    mid,
    upgraded,
)
from tests.component.test_review11b_migration_receipts import add_received_receipt
from tests.system.test_kept_receipts_recheck import receipt, world  # noqa: F401
from tests.system.test_receipt_relay import World


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_events_of_rows_closed_by_a_start_that_stopped_are_emitted_at_the_next(
    world: World,  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    s = OldStore(10, PARIS)
    for n in (8, 9):
        hq = receipt(world, HQ, mid(n), digest(n), mid(n))
        hanoi = receipt(world, HANOI, mid(n), digest(n), mid(n))
        s.envelope(n, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
        s.delivery(n, HQ, "delivered", "receipt")
        add_received_receipt(s, *hq, HQ)
        add_received_receipt(s, *hanoi, HANOI, at=T0 + timedelta(minutes=6))

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            ctx = await load_site(world.folder(PARIS), store=up.store)
            seen: list[Event] = []

            async def stopped(e: Event) -> None:
                raise KeyboardInterrupt  # the operator's stop, as the first event goes out

            first = EventBus()
            first.subscribe(stopped)
            with pytest.raises(KeyboardInterrupt):
                await recheck_kept_receipts(ctx, first, now=T0 + timedelta(days=1))
            # The commit happened: both rows are delivered.
            for n in (8, 9):
                d = {x.site: x for x in await up.store.destinations(mid(n))}
                assert d[HANOI].state == "delivered"

            async def note(e: Event) -> None:
                seen.append(e)

            again = EventBus()
            again.subscribe(note)
            await recheck_kept_receipts(ctx, again, now=T0 + timedelta(days=1))
            delivered = sorted(
                (e.message_id, e.detail.get("site")) for e in seen if e.kind == "delivered"
            )
            # Nothing was delivered to any subscriber at the first start.
            assert delivered == [(mid(8), HANOI), (mid(9), HANOI)], seen

    asyncio.run(run())


def build(w: World) -> OldStore:
    """v10's store: messages 8 and 9 to HQ and M-HANOI, HQ's receipt recorded,
    M-HANOI's verified and kept (so waiting after the migration)."""
    s = OldStore(10, PARIS)
    for n in (8, 9):
        hq = receipt(w, HQ, mid(n), digest(n), mid(n))
        hanoi = receipt(w, HANOI, mid(n), digest(n), mid(n))
        s.envelope(n, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
        s.delivery(n, HQ, "delivered", "receipt")
        add_received_receipt(s, *hq, HQ)
        add_received_receipt(s, *hanoi, HANOI, at=T0 + timedelta(minutes=6))
    return s


def collector() -> tuple[EventBus, list[tuple[str, str, str]]]:
    seen: list[tuple[str, str, str]] = []
    bus = EventBus()

    async def note(e: Event) -> None:
        seen.append((e.kind, e.message_id, e.detail.get("site", "")))

    bus.subscribe(note)
    return bus, seen


def per_row(seen: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    """The events by message, in order (the rows' order is the receipts', not fixed)."""
    out: dict[str, list[str]] = {}
    for kind, m, site in seen:
        out.setdefault(m, []).append(f"{kind} {site}".strip())
    return out


ONE = ["delivered M-HANOI", "completed"]
ALL = {mid(8): ONE, mid(9): ONE}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_start_stopped_before_its_commit_or_amid_its_events(
    world: World,  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with upgraded(backend, build(world), tmp_path) as up:
            ctx = await load_site(world.folder(PARIS), store=up.store)
            journal = kept_journal.path_of(ctx.config.directory)
            settle = up.store.settle_kept_receipts

            async def stopped(*args: object, **kw: object) -> object:
                assert journal.exists()  # written before the commit
                raise KeyboardInterrupt

            # Stopped before the commit: the journal names rows still waiting.
            ctx.store.settle_kept_receipts = stopped  # type: ignore[method-assign,assignment]
            bus, seen = collector()
            with pytest.raises(KeyboardInterrupt):
                await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
            assert (seen, oct(journal.stat().st_mode & 0o777)) == ([], "0o600")
            ctx.store.settle_kept_receipts = settle  # type: ignore[method-assign]

            # Stopped amid the events: as the second row's delivered goes out.
            bus, seen = collector()

            async def stop_at_second(e: Event) -> None:
                if e.kind == "delivered" and len(seen) == 3:
                    raise KeyboardInterrupt

            bus.subscribe(stop_at_second)
            with pytest.raises(KeyboardInterrupt):
                await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
            # None from the journal (its rows were not delivered), then the re-check's.
            first, second = seen[0][1], seen[2][1]
            assert per_row(seen) == {first: ONE, second: ["delivered M-HANOI"]}
            assert journal.exists()

            # The next start: the second row's events again (at least once), not the
            # first's; nothing waits.
            bus, seen = collector()
            done = await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
            assert per_row(seen) == {second: ONE}
            assert (done.replayed, done.delivered) == (((second, HANOI),), ())
            assert not journal.exists()
            bus, seen = collector()
            await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
            assert seen == []

    asyncio.run(run())


def _header(**over: object) -> bytes:
    head: dict[str, object] = {
        "journal": kept_journal.FORMAT,
        "version": kept_journal.VERSION,
        "site": PARIS,
        "rows": [[mid(8), HANOI], [mid(9), HANOI]],
    }
    head.update(over)
    return (json.dumps(head) + "\n").encode()


def _file(data: bytes, mode: int = 0o600) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        p.write_bytes(data)
        os.chmod(p, mode)

    return make


HOSTILE: dict[str, Callable[[Path], None]] = {
    "garbage": _file(b"\x00\xff not a journal\n" * 10),
    "no-newline": _file(_header()[:-1]),
    "deep-json": _file(b"[" * 100_000 + b"\n"),
    "other-format": _file(_header(journal="something else")),
    "other-version": _file(_header(version=2)),
    "other-site": _file(_header(site=HANOI)),
    "bad-id": _file(_header(rows=[["../../etc/passwd", HANOI]])),
    "bad-row": _file(_header(rows=[[mid(8), HANOI, "x"]])),
    "bad-mark": _file(_header() + b"7\n"),
    "text-mark": _file(_header() + b"-1\n"),
    "loose-mode": _file(_header(), 0o644),
    "link": lambda p: p.symlink_to(p.with_name("elsewhere")),
    "folder": lambda p: p.mkdir(),
    "fifo": lambda p: os.mkfifo(p, 0o600),
    "too-big": _file(_header() + b" " * 300),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_journal_not_written_by_the_re_check_is_refused_and_the_start_goes_on(
    world: World,  # noqa: F811
    kind: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kept_journal, "MAX_BYTES", 300)

    async def run() -> None:
        async with upgraded("sqlite", build(world), tmp_path) as up:
            ctx = await load_site(world.folder(PARIS), store=up.store)
            journal = kept_journal.path_of(ctx.config.directory)
            aside = journal.with_name(journal.name + ".refused")
            HOSTILE[kind](journal)
            try:
                bus, seen = collector()
                with caplog.at_level(logging.INFO, logger="valise.delivery"):
                    done = await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
                # The re-check itself went on: each event once, none from the journal.
                assert (per_row(seen), done.replayed) == (ALL, ())
                refused = [r for r in caplog.records if r.msg == "kept_receipts_journal_refused"]
                assert len(refused) == 1, [r.msg for r in caplog.records]
                assert not journal.exists() and not journal.is_symlink()
                assert aside.exists() or aside.is_symlink()
            finally:
                for p in (journal, aside):
                    if p.is_dir() and not p.is_symlink():
                        p.rmdir()
                    else:
                        p.unlink(missing_ok=True)

    asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_journal_naming_rows_not_delivered_emits_nothing_for_them(
    world: World,  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with upgraded(backend, build(world), tmp_path) as up:
            ctx = await load_site(world.folder(PARIS), store=up.store)
            # 8 and 9 of M-HANOI: waiting (open); 8 of M-EVIL: no such row; 77: no such
            # message. 8 of HQ: delivered (by v10): at least once, its event again.
            rows = [[mid(8), HANOI], [mid(9), HANOI], [mid(8), "M-EVIL"], [mid(77), HANOI]]
            rows.append([mid(8), HQ])
            journal = kept_journal.path_of(ctx.config.directory)
            _file(_header(rows=rows))(journal)
            try:
                bus, seen = collector()
                done = await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
                assert seen[0] == ("delivered", mid(8), HQ)
                assert (per_row(seen[1:]), done.replayed) == (ALL, ((mid(8), HQ),))
                assert not journal.exists()
            finally:
                journal.unlink(missing_ok=True)

    asyncio.run(run())
