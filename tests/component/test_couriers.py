"""Couriers (gateway/relay/courier.py) over an in-memory store: a batch claimed and
posted to the next site's real channel, served in this process on the port its
directory entry names (mutual TLS; the couriers' session pins the peer as a running
site's does), or, for the answers a real peer cannot be made to give here, to a stub
of ``post_batch``. Each test runs one courier (``Couriers.run``) to its end and reads
the store: the outbound row, the destination row, the history."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.relay import courier as courier_module
from gateway.relay.channel_client import post_batch
from gateway.relay.courier import Couriers
from gateway.relay.reseal import HOLD_REASON
from gateway.relay.submit import submit
from gateway.runtime.errors import PeerError
from gateway.runtime.events import EventBus
from gateway.site.context import SiteContext
from tests.component.support import (
    HANOI,
    HUB,
    PARIS,
    Net,
    RecordingHandOff,
    bus,
    couriers,
    last,
    local_delivery,
    pinned_session,
    post,
    row,
    seal,
    sealed,
    send,
    serve_channel,
    states,
    tamper_signature,
)


@asynccontextmanager
async def running(ctx: SiteContext, events: EventBus | None = None) -> AsyncIterator[Couriers]:
    """``ctx``'s couriers with the session a running site gives them."""
    c = couriers(ctx, events)
    async with pinned_session(ctx) as session:
        c.session = session
        yield c


Answer = Callable[[list[bytes]], list[dict[str, Any]]]


def stub_peer(monkeypatch: pytest.MonkeyPatch, answer: Answer) -> list[tuple[str, str, int]]:
    """Replace the courier's ``post_batch`` with ``answer``; the (endpoint, peer, batch
    size) of each call are recorded."""
    calls: list[tuple[str, str, int]] = []

    async def fake(
        session: Any, endpoint: str, peer: str, envelopes: list[bytes], timeout: float
    ) -> list[dict[str, Any]]:
        calls.append((endpoint, peer, len(envelopes)))
        return answer(envelopes)

    monkeypatch.setattr(courier_module, "post_batch", fake)
    return calls


async def test_a_batch_acked_by_the_hub_is_forwarded(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    async with serve_channel(net.hq, port=net.port(HUB)) as hq, running(net.paris) as c:
        await c.run(HUB)
    assert await row(net.paris.store, mid, HUB) == ("forwarded", "")
    assert await states(net.paris.store, mid) == [
        (HUB, "queued"),
        (HUB, "sending"),
        (HUB, "forwarded"),
    ]
    [dest] = await net.paris.store.destinations(mid)
    assert (dest.site, dest.hop, dest.state) == (HANOI, HUB, "forwarded")
    # The hub holds it, queued for its destination, and was told to send it on.
    record = await net.hq.store.get_envelope(mid)
    assert record is not None and record.received_from == PARIS
    assert await row(net.hq.store, mid, HANOI) == ("queued", "")
    assert hq.poked == [{HANOI}]
    assert c.failures == {} and HUB not in c.circuit


async def test_work_over_the_batch_size_goes_in_several_batches(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = dataclasses.replace(net.paris.config.relay, batch_envelopes=2)
    paris = dataclasses.replace(
        net.paris, config=dataclasses.replace(net.paris.config, relay=relay)
    )
    ids = [await send(paris, [HANOI], f"document {n}".encode()) for n in range(3)]
    sizes: list[int] = []

    async def spy(
        session: Any, endpoint: str, peer: str, envelopes: list[bytes], timeout: float
    ) -> list[dict[str, Any]]:
        sizes.append(len(envelopes))
        return await post_batch(session, endpoint, peer, envelopes, timeout)

    monkeypatch.setattr(courier_module, "post_batch", spy)
    async with serve_channel(net.hq, port=net.port(HUB)), running(paris) as c:
        await c.run(HUB)
    assert sizes == [2, 1]
    for mid in ids:
        assert await row(net.paris.store, mid, HUB) == ("forwarded", "")
        assert await row(net.hq.store, mid, HANOI) == ("queued", "")


async def test_an_unreachable_hub_defers_the_batch_and_opens_its_circuit(net: Net) -> None:
    """Nothing listens on HQ's endpoint: PeerError, the whole batch deferred with
    backoff, and the courier's circuit for HQ open until then."""
    first = await send(net.paris, [HANOI], b"one")
    second = await send(net.paris, [HUB], b"two")
    async with running(net.paris) as c:
        await c.run(HUB)
    for mid in (first, second):
        state, reason = await row(net.paris.store, mid, HUB)
        assert state == "deferred"
        assert reason.startswith(f"{HUB} unreachable")
        assert (await last(net.paris.store, mid, HUB)).state == "deferred"
    [entry] = [q for q in await net.paris.store.queue(peer=HUB) if q.message_id == first]
    assert entry.attempts == 1
    assert entry.next_attempt is not None and entry.next_attempt > datetime.now(UTC)
    assert c.failures == {HUB: 1}
    assert c.circuit[HUB] == entry.next_attempt
    assert [d.state for d in await net.paris.store.destinations(first)] == ["deferred"]
    # The circuit is open: a poke starts no courier before the backoff is over.
    c.poke([HUB])
    assert c.tasks[HUB] == []


async def test_a_server_that_is_not_the_expected_site_is_not_posted_to(net: Net) -> None:
    """M-HANOI's channel listening where the directory puts HQ: the pinned connector
    refuses it (the handshake names M-HANOI), the batch is deferred, nothing reaches it."""
    mid = await send(net.paris, [HANOI])
    async with serve_channel(net.hanoi, port=net.port(HUB)), running(net.paris) as c:
        await c.run(HUB)
    state, reason = await row(net.paris.store, mid, HUB)
    assert state == "deferred"
    assert f"presented a certificate of {HANOI}, not {HUB}" in reason
    assert await net.hanoi.store.get_envelope(mid) is None
    assert HUB in c.circuit


async def test_an_envelope_the_hub_refuses_is_failed_with_its_reason(net: Net) -> None:
    """A forged envelope queued at M-PARIS (its origin signature broken): the real hop
    handler refuses it; the courier fails that delivery and its destination, and says
    so on the event bus. The peer answered, so its circuit stays closed."""
    mid, data = seal(net.paris, [HANOI])
    await submit(net.paris, tamper_signature(data), datetime.now(UTC))
    events, recorder = bus()
    async with (
        serve_channel(net.hq, port=net.port(HUB)),
        running(net.paris, events) as c,
    ):
        await c.run(HUB)
    state, reason = await row(net.paris.store, mid, HUB)
    assert state == "failed"
    assert reason.startswith(f"refused by {HUB}: ") and "signature" in reason
    assert (await last(net.paris.store, mid, HUB)).reason == reason
    [dest] = await net.paris.store.destinations(mid)
    assert (dest.site, dest.state) == (HANOI, "failed")
    # Its only destination failed: the message is closed, so completed too.
    assert recorder.kinds(mid) == ["failed", "completed"]
    assert await net.hq.store.get_envelope(mid) is None
    assert HUB not in c.circuit


async def test_a_refusal_by_the_peer_fails_the_delivery_and_its_destination(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await send(net.paris, [HANOI])
    calls = stub_peer(monkeypatch, lambda batch: [{"status": "refused", "reason": "expired"}])
    events, recorder = bus()
    async with running(net.paris, events) as c:
        await c.run(HUB)
    endpoint = net.paris.directory.site(HUB).endpoint
    assert calls == [(endpoint, HUB, 1)]
    assert await row(net.paris.store, mid, HUB) == ("failed", f"refused by {HUB}: expired")
    [dest] = await net.paris.store.destinations(mid)
    assert (dest.site, dest.state) == (HANOI, "failed")
    assert recorder.kinds(mid) == ["failed", "completed"]
    assert HUB not in c.circuit  # a refusal is the envelope's, not the peer's fault


async def test_a_refusal_for_a_revoked_key_holds_the_delivery_for_a_reseal(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await send(net.paris, [HANOI])
    reason = f"{HOLD_REASON} 0123abcd of {HANOI}"
    stub_peer(monkeypatch, lambda batch: [{"status": "refused", "reason": reason}])
    events, recorder = bus()
    async with running(net.paris, events) as c:
        await c.run(HUB)
    assert await row(net.paris.store, mid, HUB) == ("held", f"{reason} ({HUB})")
    [dest] = await net.paris.store.destinations(mid)
    assert dest.state == "held"
    assert recorder.kinds(mid) == []  # held, not failed: nothing to tell yet


async def test_a_retry_answer_defers_until_the_next_directory_poll(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await send(net.paris, [HANOI])
    why = "origin signing key 00ff of M-PARIS is not in our directory (serial 3)"
    stub_peer(monkeypatch, lambda batch: [{"status": "retry", "reason": why}])
    before = datetime.now(UTC)
    async with running(net.paris) as c:
        await c.run(HUB)
    state, reason = await row(net.paris.store, mid, HUB)
    assert (state, reason) == ("deferred", why)
    [entry] = await net.paris.store.queue(peer=HUB)
    poll = net.paris.config.relay.directory_poll_seconds
    assert entry.next_attempt is not None
    assert (entry.next_attempt - before).total_seconds() >= poll
    assert HUB not in c.circuit  # the peer answered: its circuit stays closed


async def test_an_ack_that_does_not_verify_fails_the_delivery(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``accepted`` with HQ's genuine ack of the envelope, its signature replaced: the
    courier does not take the peer's word; the delivery is failed, not forwarded."""
    mid = await send(net.paris, [HANOI])
    answers: list[dict[str, Any]] = []

    def accept_with_a_forged_ack(batch: list[bytes]) -> list[dict[str, Any]]:
        return answers

    stub_peer(monkeypatch, accept_with_a_forged_ack)
    # A genuine ack of this envelope by HQ (its hub store is not the one read below).
    async with serve_channel(net.hq) as hq:
        _, body = await post(hq, net.paris, await sealed(net.paris, mid))
    ack = dict(body["results"][0]["ack"])
    ack["signature"] = base64.b64encode(bytes(64)).decode()
    answers.append({"status": "accepted", "id": mid, "ack": ack})
    events, recorder = bus()
    async with running(net.paris, events) as c:
        await c.run(HUB)
    state, reason = await row(net.paris.store, mid, HUB)
    assert state == "failed"
    assert reason.startswith(f"refused by {HUB}: ")
    assert "forwarded" not in [s for _, s in await states(net.paris.store, mid)]
    assert recorder.kinds(mid) == ["failed", "completed"]


async def test_a_peer_error_from_the_channel_client_defers(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await send(net.paris, [HANOI])

    def malformed(batch: list[bytes]) -> list[dict[str, Any]]:
        raise PeerError(f"{HUB} answered a malformed result list")

    stub_peer(monkeypatch, malformed)
    async with running(net.paris) as c:
        await c.run(HUB)
    assert await row(net.paris.store, mid, HUB) == (
        "deferred",
        f"{HUB} answered a malformed result list",
    )
    assert c.failures == {HUB: 1}


async def test_a_document_goes_to_its_destination_and_its_receipt_comes_back(
    net: Net,
) -> None:
    """The whole path in this process: M-PARIS's courier to HQ, HQ's to M-HANOI, local
    delivery there, the receipt back through HQ, and local delivery of the receipt at
    M-PARIS, which closes the destination and completes the message."""
    mid = await send(net.paris, [HANOI], b"the whole way")
    paris_events, paris_seen = bus()
    hanoi_hand_off = RecordingHandOff()
    hanoi_delivery, _ = local_delivery(net.hanoi, hanoi_hand_off)
    paris_delivery, _ = local_delivery(net.paris, RecordingHandOff(), paris_events)
    async with (
        serve_channel(net.hq, port=net.port(HUB)),
        serve_channel(net.hanoi, port=net.port(HANOI)),
        serve_channel(net.paris, port=net.port(PARIS)),
        running(net.paris) as from_paris,
        running(net.hq) as from_hq,
        running(net.hanoi) as from_hanoi,
    ):
        await from_paris.run(HUB)
        await from_hq.run(HANOI)
        assert await hanoi_delivery.once()
        await from_hanoi.run(HUB)
        await from_hq.run(PARIS)
        assert await paris_delivery.once()
    folder = net.hanoi.config.directory / "inbox" / mid
    assert (folder / "nv.txt").read_bytes() == b"the whole way"
    assert [c.message_id for c in hanoi_hand_off.calls] == [mid]
    # The hub marked the destination delivered when it relayed the receipt.
    assert [(d.site, d.state) for d in await net.hq.store.destinations(mid)] == [
        (HANOI, "delivered")
    ]
    [dest] = await net.paris.store.destinations(mid)
    assert (dest.site, dest.state) == (HANOI, "delivered")
    assert dest.receipt_for == (await net.paris.store.get_envelope(mid)).digest  # type: ignore[union-attr]
    assert await net.paris.store.destination_receipt(mid, HANOI) is not None
    assert paris_seen.kinds(mid) == ["delivered", "completed"]
