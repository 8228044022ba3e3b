"""The hop handler (gateway/relay/channel.py hop, with identify_peer) served in this
process over mutual TLS on 127.0.0.1: each client presents a site certificate from
the enrolled folders, so the peer identity is the one the middleware reads from the
TLS handshake, as in production. Envelopes are sealed for real (relay/outbox.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from crypto.keys import SigningKey
from crypto.x509 import issue_site_certificate
from envelope.open import parse_framed_head
from gateway.relay.hop import MEDIA_TYPE, check_envelope, verify_hop_ack
from gateway.site.context import load_site_ca
from gateway.store.base import InState
from tests.component.support import (
    HANOI,
    HUB,
    PARIS,
    Net,
    post,
    row,
    seal,
    sealed,
    send,
    serve_channel,
    states,
    tamper_signature,
)


async def test_hub_accepts_a_missions_envelope_stores_it_and_acks_it_signed(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    data = await sealed(net.paris, mid)
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.paris, data)
    assert status == 200
    [result] = body["results"]
    assert (result["status"], result["id"]) == ("accepted", mid)
    ack = result["ack"]
    assert (ack["site"], ack["from"]) == (HUB, PARIS)
    parsed, _ = parse_framed_head(data)
    # The ack verifies under HQ's keys as M-PARIS's directory lists them (raises if not).
    hub_keys = net.paris.directory.site(HUB).verify_keys()
    verify_hop_ack(ack, parsed.digest, parsed.head.signature, hub_keys)
    record = await net.hq.store.get_envelope(mid)
    assert record is not None and record.received_from == PARIS
    assert parse_framed_head(record.data)[0].head.trace[-1].site == HUB
    assert await row(net.hq.store, mid, HANOI) == ("queued", "")
    assert [(d.site, d.hop, d.state) for d in await net.hq.store.destinations(mid)] == [
        (HANOI, HANOI, "queued")
    ]
    assert (HANOI, "queued") in await states(net.hq.store, mid)
    assert hq.poked == [{HANOI}]
    assert not hq.inbound.is_set()  # nothing for HQ itself to open


async def test_the_same_envelope_again_is_a_duplicate_with_the_first_ack(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    data = await sealed(net.paris, mid)
    async with serve_channel(net.hq) as hq:
        _, first = await post(hq, net.paris, data)
        status, again = await post(hq, net.paris, data)
    assert status == 200
    [result] = again["results"]
    assert result["status"] == "duplicate"
    assert result["ack"] == first["results"][0]["ack"]
    assert [q.message_id for q in await net.hq.store.queue()] == [mid]
    assert hq.poked == [{HANOI}, set()]  # the duplicate woke no courier


async def test_a_batch_is_answered_envelope_by_envelope(net: Net) -> None:
    good = await send(net.paris, [HANOI], b"first")
    bad = await send(net.paris, [HANOI], b"second")
    body = await sealed(net.paris, good) + tamper_signature(await sealed(net.paris, bad))
    async with serve_channel(net.hq) as hq:
        status, answer = await post(hq, net.paris, body)
    assert status == 200
    assert [r["status"] for r in answer["results"]] == ["accepted", "refused"]
    assert await net.hq.store.get_envelope(good) is not None
    assert await net.hq.store.get_envelope(bad) is None


async def test_a_bad_origin_signature_is_refused_and_nothing_is_stored(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.paris, tamper_signature(await sealed(net.paris, mid)))
    assert status == 200
    [result] = body["results"]
    assert result["status"] == "refused"
    assert "signature" in result["reason"]
    assert await net.hq.store.get_envelope(mid) is None
    assert await net.hq.store.queue() == []
    assert await net.hq.store.history(mid) == []
    assert hq.poked == []


async def test_an_origin_key_the_directory_does_not_list_is_answered_retry(net: Net) -> None:
    """Signed by a key M-PARIS's entry does not list: maybe newer than HQ's directory,
    so ``retry`` (HopUnknownKey), not refused; nothing is stored."""
    mid, data = seal(net.paris, [HANOI], sender=SigningKey.generate())
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.paris, data)
    assert status == 200
    [result] = body["results"]
    assert result["status"] == "retry"
    assert "is not in our directory" in result["reason"]
    assert await net.hq.store.get_envelope(mid) is None


async def test_the_tls_peer_must_be_the_hops_sender(net: Net) -> None:
    """M-HANOI posting an envelope M-PARIS sealed (and never relayed): refused."""
    mid = await send(net.paris, [HUB])
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.hanoi, await sealed(net.paris, mid))
    assert status == 200
    [result] = body["results"]
    assert result["status"] == "refused"
    assert f"TLS peer {HANOI} is not the hop's sender {PARIS}" in result["reason"]
    assert await net.hq.store.get_envelope(mid) is None


async def test_a_mission_accepts_hops_from_the_hub_only(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    async with serve_channel(net.hanoi) as hanoi:
        status, body = await post(hanoi, net.paris, await sealed(net.paris, mid))
    assert status == 200
    [result] = body["results"]
    assert result["status"] == "refused"
    assert "accepts hops from the hub HQ only" in result["reason"]
    assert await net.hanoi.store.inbox() == []
    assert not hanoi.inbound.is_set()


async def test_the_destination_takes_the_hubs_hop_into_its_inbox(net: Net) -> None:
    mid = await send(net.paris, [HANOI])
    at_hub = check_envelope(
        await sealed(net.paris, mid),
        peer=PARIS,
        here=HUB,
        key=net.hq.keys.signing,
        directory=net.hq.directory,
        now=datetime.now(UTC),
    )
    async with serve_channel(net.hanoi) as hanoi:
        status, body = await post(hanoi, net.hq, at_hub.record.data)
    assert status == 200
    [result] = body["results"]
    assert (result["status"], result["ack"]["site"], result["ack"]["from"]) == (
        "accepted",
        HANOI,
        HUB,
    )
    [item] = await net.hanoi.store.inbox()
    assert (item.message_id, item.origin, item.state) == (mid, PARIS, InState.RECEIVED.value)
    assert hanoi.inbound.is_set()
    assert hanoi.poked == [set()]  # nothing to relay from a destination
    record = await net.hanoi.store.get_envelope(mid)
    assert record is not None and record.received_from == HUB
    assert [t.site for t in parse_framed_head(record.data)[0].head.trace] == [HUB, HANOI]


async def test_a_certificate_of_the_ca_not_pinned_in_the_directory_is_refused(
    net: Net,
) -> None:
    """A certificate the site CA issued to M-PARIS, whose key the directory does not
    pin: the TLS handshake passes, the middleware answers 403 and stores nothing."""
    ca = load_site_ca(net.hq.config.keys_dir, net.hq.config.key_passphrase)
    cert, key = issue_site_certificate(ca, PARIS, now=datetime.now(UTC))
    mid = await send(net.paris, [HANOI])
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.paris, await sealed(net.paris, mid), cert=(cert, key))
    assert status == 403
    assert body == {"error": f"certificate of {PARIS} is not pinned in the directory"}
    assert await net.hq.store.get_envelope(mid) is None


async def test_a_body_that_is_not_an_envelope_batch_is_refused_whole(net: Net) -> None:
    async with serve_channel(net.hq) as hq:
        status, body = await post(hq, net.paris, b"\x00\x00\x00\x10not an envelope!")
        wrong_type, refusal = await post(hq, net.paris, b"{}", content_type="application/json")
    assert status == 400 and body["error"].startswith("batch refused")
    assert wrong_type == 415 and refusal == {"error": f"expected {MEDIA_TYPE}"}
    assert await net.hq.store.queue() == []
