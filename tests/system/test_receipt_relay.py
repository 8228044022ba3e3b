"""HQ relays (and time-stamps as ``delivered``) only a receipt that fits the message it
answers, against one real network on loopback (issue 9, review F4).

HQ, M-PARIS, M-HANOI and M-EVIL run as separate processes. M-PARIS sends X to M-HANOI
and the genuine receipt comes back with its ``delivered`` token at HQ. Then each
site posts to HQ's ``/v1/hop``, with its own genuine TLS certificate and signing key,
a receipt-class envelope that does not fit X (or names no message HQ holds): each is
refused with a clear reason, HQ stores nothing of it and stamps nothing for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority, new_message_id
from gateway.demo.network import Network
from gateway.relay.hop import MEDIA_TYPE
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site, read_trust
from gateway.site.keystore import load_site_keys
from gateway.site.tls import client_context
from gateway.store.base import MessageRoute, Store
from routing.directory import Directory, parse_directory
from tests.contract.helpers import HANOI, HQ, PARIS, T0, mid, put, record

ENV = {
    "VALISE_RELAY_LEASE_SECONDS": "2",
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    "VALISE_RELAY_REQUEST_TIMEOUT_SECONDS": "5",
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "1",
}
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)
DELIVERY_TIMEOUT_S = 60.0


class World:
    def __init__(self, net: Network) -> None:
        self.net = net
        hq = net.sites["HQ"].directory
        self.directory: Directory = parse_directory(
            (hq / "directory.xml").read_bytes(), read_trust(hq / "keys")
        )

    def folder(self, site: str) -> Path:
        return self.net.sites[site].directory

    def client(self, site: str) -> ssl.SSLContext:
        k, ca = self.folder(site) / "keys", self.folder("HQ") / "keys" / "ca.crt"
        return client_context(
            (k / "tls.crt").read_bytes(),
            (k / "tls.key").read_bytes(),
            ca.read_bytes(),
            expect_site="HQ",
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    net = Network(tmp_path_factory.mktemp("receiptnet"), ("M-PARIS", "M-HANOI", "M-EVIL"), env=ENV)
    try:
        net.start()
        yield World(net)
    finally:
        net.close()


async def _with_site(world: World, site: str, fn: Any) -> Any:
    ctx = await load_site(world.folder(site))
    try:
        return await fn(ctx)
    finally:
        await ctx.store.close()


def on_site(world: World, site: str, fn: Any) -> Any:
    return asyncio.run(_with_site(world, site, fn))


def send(world: World, origin: str, to: list[str]) -> str:
    doc = Document("note.txt", "text/plain", b"receipt relay\n")
    mid: str = on_site(
        world,
        origin,
        lambda ctx: send_documents(ctx, to, [doc], now=datetime.now(UTC), subject="note"),
    )
    return mid


def wait_until(what: str, test: Any) -> None:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def fresh_id() -> str:
    return new_message_id(datetime.now(UTC), os.urandom(10))


def forged_receipt(
    world: World,
    *,
    origin: str,
    to: list[str],
    in_reply_to: str | None,
) -> tuple[str, bytes]:
    """A receipt-class envelope sealed and signed by ``origin`` with its real key."""
    now = datetime.now(UTC)
    about = in_reply_to or fresh_id()
    body = write_receipt(Receipt(about, b"\0" * 32, origin, now))
    routing = new_routing(
        origin=origin,
        destinations=to,
        now=now,
        priority=Priority.IMMEDIATE,
        doc_class=RECEIPT_CLASS,
        in_reply_to=in_reply_to,
    )
    sealing = Sealing(
        routing=routing,
        sender=load_site_keys(world.folder(origin) / "keys").signing,
        recipients=[Recipient(s, world.directory.site(s).active_encryption_key()) for s in to],
        sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
    )
    return routing.message_id, seal_bytes(sealing, [body])


async def _post(world: World, site: str, body: bytes) -> dict[str, Any]:
    url = f"https://127.0.0.1:{world.net.sites['HQ'].port}/v1/hop"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=world.client(site))) as s,
        s.post(url, data=body, headers={"Content-Type": MEDIA_TYPE}, timeout=CLIENT_TIMEOUT) as r,
    ):
        status, text = r.status, await r.text()
    await asyncio.sleep(0.25)  # let the TLS transport close before the loop ends
    assert status == 200, f"HQ answered {status}: {text}"
    (result,) = json.loads(text)["results"]
    assert isinstance(result, dict)
    return result


def post(world: World, site: str, body: bytes) -> dict[str, Any]:
    return asyncio.run(_post(world, site, body))


def delivered_tokens(world: World, message_id: str) -> list[bytes]:
    """The digests of HQ's ``delivered`` tokens stored under ``message_id``."""

    async def q(ctx: Any) -> list[bytes]:
        return [t.digest for t in await ctx.store.timestamps(message_id) if t.kind == "delivered"]

    got: list[bytes] = on_site(world, "HQ", q)
    return got


def hq_holds(world: World, message_id: str) -> bool:
    async def q(ctx: Any) -> bool:
        return await ctx.store.get_envelope(message_id) is not None

    held: bool = on_site(world, "HQ", q)
    return held


@pytest.fixture(scope="module")
def delivered(world: World) -> str:
    """X, sent M-PARIS -> M-HANOI, its genuine receipt back at M-PARIS and stamped
    ``delivered`` at HQ."""
    x = send(world, "M-PARIS", ["M-HANOI"])

    async def receipted(ctx: Any) -> bool:
        return await ctx.store.receipt(x) is not None

    wait_until("M-HANOI's receipt at M-PARIS", lambda: on_site(world, "M-PARIS", receipted))
    wait_until("HQ's delivered token for X", lambda: len(delivered_tokens(world, x)) == 1)
    return x


def assert_refused_and_untouched(
    world: World, x: str, forged: tuple[str, bytes], sender: str, *words: str
) -> None:
    before = delivered_tokens(world, x)
    receipt_id, data = forged
    result = post(world, sender, data)
    assert result["status"] == "refused", f"HQ took a receipt it should refuse: {result}"
    for word in words:
        assert word in result["reason"], f"reason {result['reason']!r} lacks {word!r}"
    assert not hq_holds(world, receipt_id), "HQ stored a receipt it refused"
    time.sleep(1.5)  # the stamper runs every second: give it the chance to be wrong
    after = delivered_tokens(world, x)
    assert after == before, f"HQ stamped a refused receipt for {x}: {before} -> {after}"
    digest = parse_framed_head(data)[0].digest
    assert digest not in after


def test_a_site_that_is_not_a_destination_cannot_receipt_a_message(
    world: World, delivered: str
) -> None:
    x = delivered
    forged = forged_receipt(world, origin="M-EVIL", to=["M-PARIS"], in_reply_to=x)
    assert_refused_and_untouched(world, x, forged, "M-EVIL", "M-EVIL", "not a destination")


def test_a_destination_cannot_send_its_receipt_to_a_site_other_than_the_origin(
    world: World, delivered: str
) -> None:
    x = delivered
    forged = forged_receipt(world, origin="M-HANOI", to=["M-EVIL"], in_reply_to=x)
    assert_refused_and_untouched(world, x, forged, "M-HANOI", "M-EVIL", "origin M-PARIS")


def test_a_receipt_goes_to_the_origin_alone(world: World, delivered: str) -> None:
    x = delivered
    forged = forged_receipt(world, origin="M-HANOI", to=["M-PARIS", "M-EVIL"], in_reply_to=x)
    assert_refused_and_untouched(world, x, forged, "M-HANOI", "one destination")


def test_a_receipt_for_a_message_hq_does_not_hold_is_refused(world: World, delivered: str) -> None:
    unknown = fresh_id()
    forged = forged_receipt(world, origin="M-EVIL", to=["M-PARIS"], in_reply_to=unknown)
    assert_refused_and_untouched(world, unknown, forged, "M-EVIL", unknown, "does not hold")
    assert delivered_tokens(world, unknown) == []


def test_a_receipt_naming_no_message_is_refused(world: World, delivered: str) -> None:
    forged = forged_receipt(world, origin="M-EVIL", to=["M-PARIS"], in_reply_to=None)
    assert_refused_and_untouched(world, forged[0], forged, "M-EVIL", "in-reply-to")


def test_the_genuine_receipt_still_counts_once(world: World, delivered: str) -> None:
    """After every forgery above, X still has exactly the one delivered token (M-HANOI's)."""
    (digest,) = delivered_tokens(world, delivered)
    assert len(digest) == 32


# -- the store lookup, on both backends ---------------------------------------------


async def test_message_routes_gives_origin_destinations_and_class(store: Store) -> None:
    await put(store, 1, destinations=(PARIS, HANOI))
    relayed = replace(record(2), origin=PARIS, received_from=PARIS, doc_class=RECEIPT_CLASS)
    await store.accept(relayed, next_hops=[HANOI], deliver_here=False, hop_ack=None, now=T0)
    got = await store.message_routes([mid(1), mid(2), mid(9), mid(1)])
    assert got == {
        mid(1): MessageRoute(HQ, (PARIS, HANOI), "document"),
        mid(2): MessageRoute(PARIS, (PARIS,), RECEIPT_CLASS),
    }
    assert await store.message_routes([]) == {}
