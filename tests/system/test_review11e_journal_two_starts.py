"""Review 11e: two starts of one site (one site folder, one store) lose the journal.

README: "several gateway processes may share one database" (PostgreSQL), and nothing
stops two ``valise serve`` of one site folder from starting together (a supervisor
restarting while an operator runs it by hand; two processes on one host with their
listen ports overridden). The re-check runs before either listens.

gateway/relay/kept_journal.py uses ONE fixed path, ``DIR/kept-receipts-events.journal``
(and one fixed ``.tmp``), with no lock. Start A journals its rows, commits, and is
emitting their events; start B, which read the same rows as waiting just before A's
commit, writes its own journal over A's (os.replace), finds the rows already closed
(nothing recorded, every row marked at once) and REMOVES the journal. A is then killed
before its last row's events: the next start finds no journal, nothing waits, and
those events are lost for good -- review 11d F2 again.

Here in process (the kill is a KeyboardInterrupt raised by A's subscriber): A's
second row's ``delivered``/``completed`` is never emitted by anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.relay import kept_journal
from gateway.relay.kept_receipts import recheck_kept_receipts
from gateway.runtime.events import Event, EventBus
from gateway.site.context import load_site
from tests.component.test_migration_v11 import HANOI, T0, mid, upgraded
from tests.system.test_kept_receipts_recheck import world  # noqa: F401
from tests.system.test_receipt_relay import World
from tests.system.test_review11d_recheck_events_lost import build, collector, per_row

NOW = T0 + timedelta(days=1)


class Paused:
    """The store, whose first read of the waiting rows pauses until ``go`` is set."""

    def __init__(self, store: Any, read: asyncio.Event, go: asyncio.Event) -> None:
        self._store, self._read, self._go = store, read, go

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def kept_receipts_to_recheck(self) -> Any:
        found = await self._store.kept_receipts_to_recheck()
        self._read.set()
        # until A is emitting (or, if A cannot run meanwhile, a while)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._go.wait(), 3)
        return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_second_start_of_the_site_does_not_remove_the_first_ones_journal(
    world: World,  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with upgraded(backend, build(world), tmp_path) as up:
            ctx = await load_site(world.folder(PARIS_FOLDER), store=up.store)
            journal = kept_journal.path_of(ctx.config.directory)
            b_read, a_out, b_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
            ctx_b = replace(ctx, store=Paused(up.store, b_read, a_out))

            # B: reads the waiting rows, waits until A is emitting, then goes on.
            bus_b, seen_b = collector()
            task_b = asyncio.create_task(recheck_kept_receipts(ctx_b, bus_b, now=NOW))
            await b_read.wait()

            # A: journals, commits, emits its first row, lets B run, then is killed.
            bus_a, seen_a = EventBus(), []

            async def kill(e: Event) -> None:
                if e.kind != "delivered":
                    return
                if not a_out.is_set():
                    a_out.set()
                    await task_b
                    b_done.set()
                    return
                raise KeyboardInterrupt  # kill -9 as the second row goes out

            async def note(e: Event) -> None:
                seen_a.append((e.kind, e.message_id, e.detail.get("site", "")))

            bus_a.subscribe(kill)  # first: the kill comes before the event is out
            bus_a.subscribe(note)
            with contextlib.suppress(KeyboardInterrupt):  # killed: then the next start
                await recheck_kept_receipts(ctx, bus_a, now=NOW)
            await task_b

            # The next start.
            bus_c, seen_c = collector()
            await recheck_kept_receipts(ctx, bus_c, now=NOW)

            rows = {m for m in (mid(8), mid(9))}
            everything = seen_a + seen_b + seen_c
            out = {m for kind, m, site in everything if kind == "delivered" and site == HANOI}
            # Both rows were closed by A's commit: each one's delivered must come out
            # (at least once) from some start.
            for m in rows:
                d = {x.site: x for x in await up.store.destinations(m)}
                assert d[HANOI].state == "delivered"
            assert out == rows, (
                f"A {per_row(seen_a)}, B {per_row(seen_b)}, next {per_row(seen_c)};"
                f" journal left: {journal.exists()}"
            )

    asyncio.run(run())


PARIS_FOLDER = "M-PARIS"
