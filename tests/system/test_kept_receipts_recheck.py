"""The first start after the v11 migration re-checks the receipts the old store kept
(gateway/relay/kept_receipts.py; review 11c), on both backends, from a v6 and a v10 store.

The receipts here are sealed with the real keys of a test network's sites (signed by
the destination, sealed to M-PARIS), so that M-PARIS's first start can open them and
put them through the v11 check; the network's processes are stopped once it is built.
The old store is the one test_migration_v11.py builds; the first start is
``recheck_kept_receipts`` on M-PARIS's site context over that upgraded store, which is
what ``valise serve`` runs before it listens or starts a worker.

- Honest: M-HANOI's receipt of message 8, its plain head answering 8, kept by v10 as a
  circular's second receipt: after the migration the row waits (open, not failed by
  expiry); after the first start it is delivered with the receipt, the digest it names
  and the time v10 acknowledged it; ``delivered`` and ``completed`` are emitted once,
  and a second start does nothing.
- Attack: M-HANOI's genuine receipt of message 8 whose plain head answers message 10
  (as a first and as a second receipt): message 10 never reads delivered; the
  receipt's history says why it was refused; expiry then fails message 10's row.
- The first receipt from a site stands (by the time v10 acknowledged it), the later
  one is refused as a second receipt; a receipt naming a superseded copy's digest
  (v10 re-seal) is verified with that digest as ``receipt_for``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.demo.network import Network
from gateway.relay.kept_receipts import recheck_kept_receipts
from gateway.runtime.events import Event, EventBus
from gateway.site.context import SiteContext, load_site
from gateway.site.keystore import load_site_keys
from gateway.store._common import RECHECK_REASON
from tests.component.test_migration_v11 import (
    EXPIRES,
    HANOI,
    HQ,
    PARIS,
    T0,
    OldStore,
    Upgraded,
    digest,
    mid,
    raw,
    upgraded,
)
from tests.component.test_review11b_migration_receipts import add_received_receipt
from tests.system.test_receipt_relay import ENV, World

REASON = "SELECT reason FROM destinations WHERE message_id = $1 AND site = $2"
LAST = "SELECT reason FROM history WHERE message_id = $1 ORDER BY id DESC LIMIT 1"
DONE = "SELECT completed_at FROM envelopes WHERE message_id = $1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """HQ, M-PARIS and M-HANOI with their keys and directory; nothing left running."""
    net = Network(tmp_path_factory.mktemp("keptnet"), ("M-PARIS", "M-HANOI"), env=ENV)
    try:
        net.start()
    finally:
        net.close()
    yield World(net)


def receipt(
    world: World, signer: str, names: str, named: bytes, answers: str, minute: int = 3
) -> tuple[str, bytes, bytes]:
    """A receipt envelope to M-PARIS signed with ``signer``'s real key: its document
    receipts ``names`` (digest ``named``), its plain head answers ``answers``. Its id,
    bytes and digest."""
    at = T0 + timedelta(minutes=minute)
    body = write_receipt(Receipt(names, named, signer, at))
    routing = new_routing(
        origin=signer,
        destinations=[PARIS],
        now=at,
        expires=EXPIRES,
        priority=Priority.IMMEDIATE,
        doc_class=RECEIPT_CLASS,
        in_reply_to=answers,
    )
    data = seal_bytes(
        Sealing(
            routing=routing,
            sender=load_site_keys(world.folder(signer) / "keys").signing,
            recipients=[Recipient(PARIS, world.directory.site(PARIS).active_encryption_key())],
            sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
        ),
        [body],
    )
    return routing.message_id, data, parse_framed_head(data)[0].digest


async def first_start(world: World, up: Upgraded) -> tuple[list[Event], SiteContext]:
    """M-PARIS's first start over the upgraded store: the re-check, and its events."""
    ctx = await load_site(world.folder(PARIS), store=up.store)
    events: list[Event] = []
    bus = EventBus()

    async def seen(e: Event) -> None:
        events.append(e)

    bus.subscribe(seen)
    await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
    return events, ctx


def kinds(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.message_id, e.detail.get("site", "")) for e in events]


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_second_receipt_kept_by_v10_is_delivered_after_the_first_start(
    world: World, backend: str, start: int, tmp_path: Path
) -> None:
    s = OldStore(start, PARIS)
    hq = receipt(world, HQ, mid(8), digest(8), mid(8))
    hanoi = receipt(world, HANOI, mid(8), digest(8), mid(8))
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
    s.delivery(8, HQ, "delivered", "receipt")
    s.history(8, HQ, "delivered", "receipt", T0 + timedelta(minutes=4))
    add_received_receipt(s, *hq, HQ)
    add_received_receipt(s, *hanoi, HANOI, at=T0 + timedelta(minutes=6))

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            store = up.store
            # The migration: M-HANOI's row waits for the re-check; expiry leaves it.
            d = {x.site: x for x in await store.destinations(mid(8))}
            assert d[HQ].state == "delivered"
            assert d[HANOI].state != "delivered"
            assert await raw(up, REASON, mid(8), HANOI) == RECHECK_REASON
            closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
            assert [c for c in closed if c.message_id == mid(8)] == []
            assert await raw(up, REASON, mid(8), HANOI) == RECHECK_REASON
            # The first start.
            events, ctx = await first_start(world, up)
            d = {x.site: x for x in await store.destinations(mid(8))}
            got = (d[HANOI].state, d[HANOI].receipt_for, d[HANOI].receipt_digest)
            assert got == ("delivered", digest(8), hanoi[2])
            assert d[HANOI].receipt_at == T0 + timedelta(minutes=6)
            assert await store.destination_receipt(mid(8), HANOI) == hanoi[1]
            assert await raw(up, DONE, mid(8)) is not None
            assert kinds(events) == [("delivered", mid(8), HANOI), ("completed", mid(8), "")]
            hops = [(h.peer, h.state) for h in await store.history(mid(8)) if h.peer == HQ]
            assert hops[-1] == (HQ, "delivered")
            # A second start: nothing waits, nothing is emitted.
            again = EventBus()
            seen: list[Event] = []

            async def note(e: Event) -> None:
                seen.append(e)

            again.subscribe(note)
            done = await recheck_kept_receipts(ctx, again)
            assert (done.delivered, done.unconfirmed, done.refused, seen) == ((), (), (), [])
            closed = await store.expire(now=EXPIRES + timedelta(seconds=2))
            assert [c for c in closed if c.message_id == mid(8)] == []

    asyncio.run(run())


@pytest.mark.parametrize("first", [True, False], ids=["first-receipt", "second-receipt"])
@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_receipt_whose_head_answers_another_message_is_refused_at_the_first_start(
    world: World, backend: str, start: int, first: bool, tmp_path: Path
) -> None:
    s = OldStore(start, PARIS)
    lying = receipt(world, HANOI, mid(8), digest(8), answers=mid(10))
    if first:
        # v10 recorded it for message 8, the one its signed document names.
        s.envelope(8, origin=PARIS, destinations=(HANOI,), receipt=lying[1])
        s.delivery(8, HANOI, "delivered", "receipt")
    else:
        hq = receipt(world, HQ, mid(8), digest(8), mid(8))
        s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
        s.delivery(8, HQ, "delivered", "receipt")
        add_received_receipt(s, *hq, HQ)
    add_received_receipt(s, *lying, HANOI)
    s.envelope(10, origin=PARIS, destinations=(HANOI,))
    s.delivery(10, HANOI, "forwarded", "")

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            store = up.store
            events, _ = await first_start(world, up)
            d10 = {x.site: x for x in await store.destinations(mid(10))}
            assert d10[HANOI].state != "delivered", (d10[HANOI].state, d10[HANOI].reason)
            assert await store.destination_receipt(mid(10), HANOI) is None
            why = f"receipt names message {mid(8)} but its envelope answers {mid(10)}"
            reason = await raw(up, REASON, mid(10), HANOI)
            assert reason == f"receipt kept before v11 not confirmed: {why}"
            assert await raw(up, LAST, lying[0]) == f"receipt refused at the v11 re-check: {why}"
            assert [e for e in events if e.message_id == mid(10)] == []
            d8 = {x.site: x for x in await store.destinations(mid(8))}
            # First: v10 recorded it for 8 (the SQL attributes it by its bytes). Second:
            # no column ties it to 8, and the v11 check refuses it: 8 stays open.
            assert d8[HANOI].state == ("delivered" if first else "forwarded")
            # No longer waiting: expiry fails message 10's row as any open one.
            closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
            assert [(c.message_id, c.sites) for c in closed if c.message_id == mid(10)] == [
                (mid(10), (HANOI,))
            ]

    asyncio.run(run())


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_first_kept_receipt_stands_and_a_superseded_digest_is_named(
    world: World, backend: str, start: int, tmp_path: Path
) -> None:
    s = OldStore(start, PARIS)
    hq = receipt(world, HQ, mid(8), digest(8), mid(8))
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
    s.delivery(8, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq, HQ)
    # M-HANOI's receipt came twice (v10 did not refuse a second one): the first
    # acknowledged stands, though the later one is listed first.
    later = receipt(world, HANOI, mid(8), digest(8), mid(8), minute=7)
    earlier = receipt(world, HANOI, mid(8), digest(8), mid(8), minute=4)
    add_received_receipt(s, *later, HANOI, at=T0 + timedelta(minutes=9))
    add_received_receipt(s, *earlier, HANOI, at=T0 + timedelta(minutes=5))
    # 12: re-sealed here (v10: a superseded copy, digest 13) before M-HANOI's receipt of
    # the first copy came. A v6 store knows no superseded digest: the receipt names none
    # of 12's digests and is refused.
    hq12 = receipt(world, HQ, mid(12), digest(12), mid(12))
    s.envelope(12, origin=PARIS, destinations=(HQ, HANOI), receipt=hq12[1])
    s.delivery(12, HQ, "delivered", "receipt")
    if start >= 10:
        s.rows[-3][1]["superseded"] = digest(13).hex()
    add_received_receipt(s, *hq12, HQ)
    add_received_receipt(s, *receipt(world, HANOI, mid(12), digest(13), mid(12)), HANOI)

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            store = up.store
            events, _ = await first_start(world, up)
            d8 = {x.site: x for x in await store.destinations(mid(8))}
            got = (d8[HANOI].state, d8[HANOI].receipt_digest, d8[HANOI].receipt_at)
            assert got == ("delivered", earlier[2], T0 + timedelta(minutes=5))
            second = f"a second receipt from {HANOI} for {mid(8)}: the first (sha256 "
            refused = await raw(up, LAST, later[0])
            assert refused.startswith(f"receipt refused at the v11 re-check: {second}"), refused
            d12 = {x.site: x for x in await store.destinations(mid(12))}
            if start >= 10:
                assert (d12[HANOI].state, d12[HANOI].receipt_for) == ("delivered", digest(13))
                assert await raw(up, DONE, mid(12)) is not None
            else:
                assert d12[HANOI].state == "forwarded"
                reason = await raw(up, REASON, mid(12), HANOI)
                assert reason.startswith("receipt kept before v11 not confirmed: "), reason
                assert "not the digest of any envelope sent as" in reason
            delivered = sorted(k for k in kinds(events) if k[0] == "delivered")
            assert delivered == [("delivered", mid(8), HANOI)] + (
                [("delivered", mid(12), HANOI)] if start >= 10 else []
            )

    asyncio.run(run())
