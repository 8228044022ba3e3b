"""Attacks on a circular's receipts (issue 11), against one real network on loopback.

HQ, M-PARIS, M-HANOI and M-EVIL run as separate processes. M-PARIS sends circulars
to [HQ, M-HANOI] (and one to [HQ, M-EVIL]). Each attack posts, with a genuine site's
TLS certificate and signing key, a receipt that must not count:

- from a site that is not a destination: HQ refuses it on the wire; and the origin,
  handed it directly (what HQ would have stopped), acks it with the reason and changes
  nothing;
- a second, different receipt from a destination that has one: HQ refuses it on the
  wire; the origin, handed it directly, refuses it with the reason;
- a receipt naming another envelope digest, from a genuine destination: HQ cannot
  open it and relays it (its row for that destination then reads delivered, "receipt
  relayed": the hub's documented limit); the origin refuses it, and stays at 1 of 2
  with that destination outstanding.

"Changes nothing" is checked on the original: its destination rows and its history
are the same before and after, and no ``delivered`` event is emitted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.bridges.mail.delivery import deliver_locally
from gateway.demo.network import Network
from gateway.relay.local_delivery import LocalDelivery
from gateway.relay.submit import record_for
from gateway.runtime.events import Event, EventBus
from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext, load_site
from gateway.site.keystore import load_site_keys
from tests.support.pg import PG_DSN
from tests.system.test_circulars import _pg_up
from tests.system.test_receipt_relay import ENV, World, on_site, post, send, wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    dsn = None
    if request.param == "postgres":
        asyncio.run(_pg_up())  # skips (or fails in CI) when PostgreSQL is down
        dsn = PG_DSN
    root = tmp_path_factory.mktemp("circularnet")
    net = Network(root, ("M-PARIS", "M-HANOI", "M-EVIL"), env=ENV, postgres_dsn=dsn)
    try:
        net.start()
        yield World(net)
    finally:
        net.close()


def sealed_receipt(
    world: World,
    *,
    signer: str,
    about: str,
    digest: bytes,
    names: str | None = None,
    answers: str | None = None,
) -> bytes:
    """A receipt envelope to M-PARIS, signed by ``signer`` with its real key, receipting
    ``about`` under envelope ``digest`` (and naming site ``names``, default the signer;
    its routing header answering ``answers``, default ``about``)."""
    now = datetime.now(UTC)
    body = write_receipt(Receipt(about, digest, names or signer, now))
    routing = new_routing(
        origin=signer,
        destinations=["M-PARIS"],
        now=now,
        priority=Priority.IMMEDIATE,
        doc_class=RECEIPT_CLASS,
        in_reply_to=answers or about,
    )
    sealing = Sealing(
        routing=routing,
        sender=load_site_keys(world.folder(signer) / "keys").signing,
        recipients=[Recipient("M-PARIS", world.directory.site("M-PARIS").active_encryption_key())],
        sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
    )
    return seal_bytes(sealing, [body])


def snapshot(world: World, site: str, message_id: str) -> tuple[Any, Any]:
    """The destination rows and history of ``message_id`` at ``site``."""

    async def q(ctx: SiteContext) -> tuple[Any, Any]:
        return await ctx.store.destinations(message_id), await ctx.store.history(message_id)

    got: tuple[Any, Any] = on_site(world, site, q)
    return got


def receipts_in(world: World, site: str, message_id: str) -> dict[str, bytes | None]:
    dests, _ = snapshot(world, site, message_id)
    return {d.site: d.receipt_digest for d in dests if d.state == "delivered"}


def sent_digest(world: World, message_id: str) -> bytes:
    async def q(ctx: SiteContext) -> bytes:
        record = await ctx.store.get_envelope(message_id)
        assert record is not None
        return record.digest

    digest: bytes = on_site(world, "M-PARIS", q)
    return digest


async def _deliver_at_origin(world: World, data: bytes) -> tuple[str, list[Event], str]:
    """What M-PARIS's local delivery does with ``data`` arriving from HQ (M-PARIS's own
    process stopped): the receipt's id, the events emitted and the item's reason."""
    ctx = await load_site(world.folder("M-PARIS"))
    events: list[Event] = []
    bus = EventBus()

    async def seen(e: Event) -> None:
        events.append(e)

    bus.subscribe(seen)
    try:
        record = record_for(data, "HQ")
        now = datetime.now(UTC)
        await ctx.store.accept(record, next_hops=[], deliver_here=True, hop_ack=None, now=now)
        delivery = LocalDelivery(
            ctx,
            poke=lambda peers: None,
            inbound=asyncio.Event(),
            metrics=Metrics(),
            events=bus,
            crash=lambda point: None,
            hand_off=deliver_locally,
        )
        assert await delivery.once()
        (item,) = [i for i in await ctx.store.inbox() if i.message_id == record.message_id]
        assert item.state == "acked"
        reason = (await ctx.store.history(record.message_id))[-1].reason
        return record.message_id, events, reason
    finally:
        await ctx.store.close()


def refused_at_origin(world: World, x: str, data: bytes, reason: str) -> None:
    """Hand ``data`` to M-PARIS as if HQ had relayed it: it is acked with ``reason``,
    and X's destinations and history do not change, nor is any event emitted."""
    paris = world.net.sites["M-PARIS"]
    paris.stop()
    try:
        before = snapshot(world, "M-PARIS", x)
        _, events, why = asyncio.run(_deliver_at_origin(world, data))
        assert why == f"receipt refused: {reason}"
        assert snapshot(world, "M-PARIS", x) == before
        assert [e for e in events if e.kind in ("delivered", "completed")] == []
    finally:
        paris.start()


@pytest.fixture(scope="module")
def circular(world: World) -> str:
    """X, sent M-PARIS -> [HQ, M-HANOI], both receipts back at M-PARIS."""
    x = send(world, "M-PARIS", ["HQ", "M-HANOI"])
    wait_until("both receipts of X", lambda: len(receipts_in(world, "M-PARIS", x)) == 2)
    return x


def test_a_receipt_from_a_site_that_is_not_a_destination_is_refused_at_hq_and_at_the_origin(
    world: World, circular: str
) -> None:
    x = circular
    data = sealed_receipt(world, signer="M-EVIL", about=x, digest=sent_digest(world, x))
    result = post(world, "M-EVIL", data)
    assert result["status"] == "refused"
    assert "M-EVIL, which is not a destination" in result["reason"]
    refused_at_origin(
        world,
        x,
        data,
        f"receipt from M-EVIL, which is not a destination of {x} (destinations: HQ, M-HANOI)",
    )


def test_a_receipt_naming_a_destination_signed_by_another_site_is_refused_at_the_origin(
    world: World, circular: str
) -> None:
    x = circular
    data = sealed_receipt(
        world, signer="M-EVIL", about=x, digest=sent_digest(world, x), names="M-HANOI"
    )
    refused_at_origin(world, x, data, "receipt names site M-HANOI but is signed by M-EVIL")


def test_a_receipt_whose_envelope_answers_another_message_is_refused_at_the_origin(
    world: World, circular: str
) -> None:
    """HQ marks delivered what the routing header answers (it cannot open the receipt);
    the origin records what the signed receipt names: when they differ, neither."""
    x = circular
    y = send(world, "M-PARIS", ["M-HANOI"])
    wait_until("Y's receipt", lambda: "M-HANOI" in receipts_in(world, "M-PARIS", y))
    data = sealed_receipt(world, signer="M-HANOI", about=x, digest=sent_digest(world, x), answers=y)
    before_y = snapshot(world, "M-PARIS", y)
    refused_at_origin(world, x, data, f"receipt names message {x} but its envelope answers {y}")
    assert snapshot(world, "M-PARIS", y) == before_y


def test_a_second_receipt_for_one_destination_is_refused(world: World, circular: str) -> None:
    x = circular
    first = receipts_in(world, "M-PARIS", x)["M-HANOI"]
    assert first is not None
    time.sleep(0.01)  # another time in the receipt: another envelope
    data = sealed_receipt(world, signer="M-HANOI", about=x, digest=sent_digest(world, x))
    assert parse_framed_head(data)[0].digest != first
    result = post(world, "M-HANOI", data)
    assert result["status"] == "refused"
    assert result["reason"].startswith(f"a second receipt from M-HANOI for {x}: the first")
    refused_at_origin(
        world,
        x,
        data,
        f"a second receipt from M-HANOI for {x}: the first (sha256 {first.hex()[:16]}…) stands",
    )
    assert receipts_in(world, "M-PARIS", x)["M-HANOI"] == first


def test_the_same_receipt_again_is_a_duplicate_at_hq(world: World, circular: str) -> None:
    """M-HANOI's courier posting its genuine receipt again (its ack lost, say) gets the
    first acknowledgement back: HQ does not mistake it for a second receipt."""
    x = circular
    first = receipts_in(world, "M-PARIS", x)["M-HANOI"]

    async def own_receipt(ctx: SiteContext) -> bytes:
        for entry in await ctx.store.queue():
            record = await ctx.store.get_envelope(entry.message_id)
            if record is None or record.doc_class != RECEIPT_CLASS:
                continue
            if parse_framed_head(record.data)[0].head.routing.in_reply_to == x:
                return record.data
        raise AssertionError("M-HANOI holds no receipt of X")

    data: bytes = on_site(world, "M-HANOI", own_receipt)
    assert parse_framed_head(data)[0].digest == first
    result = post(world, "M-HANOI", data)
    assert result["status"] == "duplicate", result
    assert receipts_in(world, "M-PARIS", x)["M-HANOI"] == first


def test_a_receipt_for_another_digest_is_refused_at_the_origin(world: World) -> None:
    """M-EVIL is a genuine destination of Y, its process stopped; a receipt sealed with
    its keys naming another digest passes HQ (it cannot open it) but not the origin."""
    world.net.sites["M-EVIL"].stop()
    y = send(world, "M-PARIS", ["HQ", "M-EVIL"])
    wait_until("HQ's receipt of Y", lambda: "HQ" in receipts_in(world, "M-PARIS", y))
    wrong = os.urandom(32)
    data = sealed_receipt(world, signer="M-EVIL", about=y, digest=wrong)
    receipt_id = parse_framed_head(data)[0].head.routing.message_id
    result = post(world, "M-EVIL", data)
    assert result["status"] == "accepted", result
    hq = {d.site: d for d in snapshot(world, "HQ", y)[0]}
    assert (hq["M-EVIL"].state, hq["M-EVIL"].reason) == ("delivered", "receipt relayed")

    def acked() -> bool:
        history = snapshot(world, "M-PARIS", receipt_id)[1]
        return bool(history) and history[-1].state == "acked"

    wait_until("M-PARIS to take the receipt", acked)
    why = snapshot(world, "M-PARIS", receipt_id)[1][-1].reason
    assert why == (
        f"receipt refused: receipt from M-EVIL names envelope digest {wrong.hex()[:16]}…,"
        f" not the digest of any envelope sent as {y}"
    )
    dests = {d.site: d for d in snapshot(world, "M-PARIS", y)[0]}
    assert dests["HQ"].state == "delivered"
    assert dests["M-EVIL"].state == "forwarded"
    assert dests["M-EVIL"].receipt_at is None
