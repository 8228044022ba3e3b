"""Local delivery (gateway/relay/local_delivery.py LocalDelivery.once) over an
in-memory store, with a recording HandOff: what arrived is opened to DIR/inbox/ID,
its receipt sealed and queued back to the origin in the same transaction, and the
hand-off's answer decides the item's state (a Retry: it stays received and is tried
again later; a Refused: undeliverable). At the origin, the receipt closes its
destination. Envelopes reach the destination's store through HQ's and the
destination's own hop checks (tests/component/support.py arrive)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS
from gateway.bridges.mail.delivery import MailRefused
from gateway.relay import local_delivery as local_delivery_module
from gateway.relay import opening
from gateway.relay.handoff import DeliveryDeferred
from gateway.relay.opening import Opened
from gateway.store.base import InState
from tests.component.support import (
    HANOI,
    HUB,
    PARIS,
    Net,
    RecordingHandOff,
    arrive,
    bus,
    last,
    local_delivery,
    row,
    sealed,
    send,
)


async def _queued_receipt(net: Net, message_id: str) -> str:
    """The id of the one receipt M-HANOI queued (to HQ), checking what it answers."""
    entries = await net.hanoi.store.queue(peer=HUB)
    assert len(entries) == 1
    [entry] = entries
    assert (entry.state, entry.origin, entry.destinations) == ("queued", HANOI, (PARIS,))
    record = await net.hanoi.store.get_envelope(entry.message_id)
    assert record is not None and record.doc_class == RECEIPT_CLASS
    routing = parse_framed_head(record.data)[0].head.routing
    assert routing.in_reply_to == message_id
    return entry.message_id


async def test_a_document_is_opened_to_the_inbox_and_its_receipt_queued(net: Net) -> None:
    mid = await arrive(
        net, await sealed(net.paris, await send(net.paris, [HANOI], b"visa 42")), PARIS, HANOI
    )
    hand_off = RecordingHandOff()
    events, recorder = bus()
    worker, poked = local_delivery(net.hanoi, hand_off, events)
    assert await worker.once()
    folder = net.hanoi.config.directory / "inbox" / mid
    assert (folder / "nv.txt").read_bytes() == b"visa 42"
    meta = json.loads((folder / ".valise.json").read_text())
    assert meta["subject"] == "Note verbale"
    assert meta["parts"] == [{"name": "nv.txt", "media_type": "text/plain", "size": 7}]
    [call] = hand_off.calls
    assert (call.message_id, call.subject, call.folder) == (mid, "Note verbale", folder)
    assert call.files == [".valise.json", "nv.txt"]
    [item] = await net.hanoi.store.inbox(state=InState.AVAILABLE)
    assert (item.message_id, item.origin) == (mid, PARIS)
    assert (await last(net.hanoi.store, mid, None)).state == InState.AVAILABLE.value
    await _queued_receipt(net, mid)
    assert poked == [{HUB}]  # the receipt's courier is started
    assert recorder.kinds(mid) == ["received"]
    assert not await worker.once()  # nothing left to deliver


async def test_a_hand_off_that_fails_for_now_leaves_the_document_received(net: Net) -> None:
    mid = await arrive(net, await sealed(net.paris, await send(net.paris, [HANOI])), PARIS, HANOI)
    hand_off = RecordingHandOff(fail=DeliveryDeferred("mail server down"))
    worker, poked = local_delivery(net.hanoi, hand_off)
    assert await worker.once()
    [item] = await net.hanoi.store.inbox(state=InState.RECEIVED)
    assert item.message_id == mid
    assert await net.hanoi.store.queue() == []  # no receipt before the hand-off took it
    assert poked == []
    assert worker.retry_at[mid] > datetime.now(UTC)
    assert worker.failures == {mid: 1}
    assert not await worker.once()  # not due again before its backoff is over
    assert len(hand_off.calls) == 1
    # Once due, and the mail server back: delivered, with its receipt, exactly once.
    hand_off.fail = None
    worker.retry_at[mid] = datetime.now(UTC) - timedelta(seconds=1)
    assert await worker.once()
    assert [i.message_id for i in await net.hanoi.store.inbox(state=InState.AVAILABLE)] == [mid]
    await _queued_receipt(net, mid)
    assert len(hand_off.calls) == 2 and worker.failures == {}


async def test_a_hand_off_refused_for_good_makes_the_document_undeliverable(net: Net) -> None:
    mid = await arrive(net, await sealed(net.paris, await send(net.paris, [HANOI])), PARIS, HANOI)
    hand_off = RecordingHandOff(fail=MailRefused("550 5.1.1 no such mailbox"))
    worker, poked = local_delivery(net.hanoi, hand_off)
    assert await worker.once()
    [item] = await net.hanoi.store.inbox(state=InState.ACKED)
    assert item.message_id == mid
    transition = await last(net.hanoi.store, mid, None)
    assert transition.state == InState.ACKED.value
    assert transition.reason == "undeliverable: 550 5.1.1 no such mailbox"
    assert await net.hanoi.store.queue() == []  # no receipt for what was not delivered
    assert poked == []
    assert not await worker.once()


async def test_an_envelope_that_does_not_open_is_acked_undeliverable(net: Net) -> None:
    """A part altered on the way (the hop checks read the head only): opening fails
    its digest check, the item is acked with the reason, nothing is handed on."""
    data = await sealed(net.paris, await send(net.paris, [HANOI]))
    altered = data[:-1] + bytes([data[-1] ^ 1])
    mid = await arrive(net, altered, PARIS, HANOI)
    hand_off = RecordingHandOff()
    worker, _ = local_delivery(net.hanoi, hand_off)
    assert await worker.once()
    assert hand_off.calls == []
    transition = await last(net.hanoi.store, mid, None)
    assert transition.state == InState.ACKED.value
    assert transition.reason.startswith("undeliverable: ")
    assert not (net.hanoi.config.directory / "inbox" / mid).exists()
    assert await net.hanoi.store.queue() == []


async def test_the_receipt_at_the_origin_closes_the_destination(net: Net) -> None:
    mid = await send(net.paris, [HANOI], b"for the record")
    await arrive(net, await sealed(net.paris, mid), PARIS, HANOI)
    hanoi, _ = local_delivery(net.hanoi, RecordingHandOff())
    assert await hanoi.once()
    receipt = await _queued_receipt(net, mid)
    await arrive(net, await sealed(net.hanoi, receipt), HANOI, PARIS)
    events, recorder = bus()
    paris, _ = local_delivery(net.paris, RecordingHandOff(), events)
    assert await paris.once()
    [dest] = await net.paris.store.destinations(mid)
    assert (dest.site, dest.state) == (HANOI, "delivered")
    assert dest.receipt_at is not None
    signed = await net.hanoi.store.get_envelope(receipt)
    assert signed is not None and dest.receipt_digest == signed.digest
    kept = await net.paris.store.destination_receipt(mid, HANOI)
    assert kept is not None  # the receipt envelope, as it arrived (with its trace)
    assert parse_framed_head(kept)[0].head.routing.message_id == receipt
    assert recorder.kinds(mid) == ["delivered", "completed"]
    # The receipt envelope itself is acked at the origin, never shown in the inbox.
    assert (await last(net.paris.store, receipt, None)).state == InState.ACKED.value
    assert await net.paris.store.inbox(state=InState.AVAILABLE) == []


async def test_a_receipt_for_a_message_not_sent_from_here_is_refused(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    await arrive(net, await sealed(net.paris, mid), PARIS, HANOI)
    hanoi, _ = local_delivery(net.hanoi, RecordingHandOff())
    assert await hanoi.once()
    receipt = await _queued_receipt(net, mid)
    # M-PARIS's operator deleted the message meanwhile: the receipt fits nothing here.
    await net.paris.store.delete(mid, now=datetime.now(UTC), reason="operator")
    await arrive(net, await sealed(net.hanoi, receipt), HANOI, PARIS)
    events, recorder = bus()
    paris, _ = local_delivery(net.paris, RecordingHandOff(), events)
    assert await paris.once()
    transition = await last(net.paris.store, receipt, None)
    assert transition.state == InState.ACKED.value
    assert transition.reason.startswith("receipt refused: ")
    assert recorder.events == []
    assert await row(net.hanoi.store, receipt, HUB) == ("queued", "")


async def test_keys_a_batch_loaded_do_not_replace_newer_ones_adopted_meanwhile(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 13 (adv13 a8): a batch loads the ring from disk for an envelope sealed to
    a key rotated in; while it runs the key watcher adopts a newer ring (a revocation).
    The batch must not put its older ring back at the end: the watcher would not look
    again (the ring unchanged since it did) and the site would sign with a revoked key."""
    mid = await arrive(net, await sealed(net.paris, await send(net.paris, [HANOI])), PARIS, HANOI)
    ctx = net.hanoi
    loaded_by_batch = dataclasses.replace(ctx.keys)  # the ring as the batch read it
    adopted_meanwhile = dataclasses.replace(ctx.keys)  # the watcher's, newer

    def open_then_watcher_adopts(*args: Any, **kwargs: Any) -> Opened:
        result = opening.open_one(*args, **kwargs)
        ctx.adopt_keys(adopted_meanwhile)  # the watcher's round, between two opens
        return dataclasses.replace(result, loaded_keys=loaded_by_batch)

    monkeypatch.setattr(local_delivery_module, "open_one", open_then_watcher_adopts)
    worker, _ = local_delivery(ctx, RecordingHandOff())
    assert await worker.once()
    assert ctx.keys is adopted_meanwhile
    [item] = await ctx.store.inbox(state=InState.AVAILABLE)
    assert item.message_id == mid


async def test_keys_a_batch_loaded_are_adopted_when_nothing_changed_meanwhile(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    await arrive(net, await sealed(net.paris, await send(net.paris, [HANOI])), PARIS, HANOI)
    ctx = net.hanoi
    loaded_by_batch = dataclasses.replace(ctx.keys)

    def open_loading(*args: Any, **kwargs: Any) -> Opened:
        return dataclasses.replace(opening.open_one(*args, **kwargs), loaded_keys=loaded_by_batch)

    monkeypatch.setattr(local_delivery_module, "open_one", open_loading)
    worker, _ = local_delivery(ctx, RecordingHandOff())
    assert await worker.once()
    assert ctx.keys is loaded_by_batch
