"""Review 11b: the origin records a "receipt" for a message it never sent.

The origin's receipt check (gateway/relay/local_delivery.py _check_receipts,
gateway/relay/circular.py check_origin_receipt) looks the answered message up with
``Store.sent_digests``, which returns *any* envelope stored under that id: also a
document this site *received*, and a receipt envelope it sealed itself. A receipt
answering such a message passes every check when it comes from one of that message's
destinations (they all know its digest): M-PARIS then records it through the legacy
path (no destination rows: envelopes.receipt, hop rows delivered) and emits
``delivered`` (webhook, Prometheus) for a message it did not send.

Here HQ, the relay, co-recipient of a document M-HANOI sent to [M-PARIS, HQ], signs a
receipt for it with its real key and hands it to M-PARIS (HQ's own hop check never
runs on what HQ itself sends). M-PARIS must refuse it: it is not the origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.demo.network import Network
from tests.system.test_circular_receipts import _deliver_at_origin, sealed_receipt
from tests.system.test_receipt_relay import ENV, World, on_site, send, wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    net = Network(tmp_path_factory.mktemp("notsent"), ("M-PARIS", "M-HANOI"), env=ENV)
    try:
        net.start()
        yield World(net)
    finally:
        net.close()


def test_a_receipt_for_a_document_received_here_is_refused(world: World) -> None:
    y = send(world, "M-HANOI", ["M-PARIS", "HQ"])

    async def received(ctx: object) -> bytes | None:
        record = await ctx.store.get_envelope(y)  # type: ignore[attr-defined]
        return None if record is None else record.digest

    wait_until("Y at M-PARIS", lambda: on_site(world, "M-PARIS", received) is not None)
    digest = on_site(world, "M-PARIS", received)
    data = sealed_receipt(world, signer="HQ", about=y, digest=digest)
    paris = world.net.sites["M-PARIS"]
    paris.stop()
    try:
        _, events, why = asyncio.run(_deliver_at_origin(world, data))
    finally:
        paris.start()
    assert [e.kind for e in events if e.kind in ("delivered", "completed")] == [], events
    assert why.startswith("receipt refused"), why
    assert on_site(world, "M-PARIS", lambda ctx: ctx.store.receipt(y)) is None
