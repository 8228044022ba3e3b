"""Review 11e: a kept receipt closed "on v10's verdict" although it CAN be re-opened.

gateway/relay/kept_receipts.py ``_open_kept`` looks only at the FIRST recipient stanza
for this site (``_stanza_key``). If that stanza names an encryption key of this site
retired since, the receipt goes down the KEPT_UNOPENED path: its document is not read,
and the row its plain head answers closes as delivered (the head-lie of review 11c
cannot be detected there, an accepted risk "limited to receipts sealed to a key of
ours retired since").

But an envelope may carry several stanzas for one site with different keys
(envelope/head.py ``_check_recipients`` refuses only the same site AND key twice). A
destination that sealed its receipt to our active key of the time (first) and to our
next key (second) -- or any hostile destination that wants the head-lie -- gets the
unopened path after our routine rotation although the second stanza opens with a key
we hold and use now. The document, which names ANOTHER message, is never read.

World (in process, both backends): v10 at M-PARIS verified and kept M-HANOI's receipt
whose document receipts message 9 (so v10 closed 9) and whose plain head answers
message 8 (M-HANOI's row of 8 open, so the migration marks it for the re-check). It is
sealed to M-PARIS twice: first to key OLD (retired since, private file gone), then to
M-PARIS's current active key. The re-check should open it with the active key, see
that the document names 9, not 8, and refuse it. It closes 8 as delivered instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from crypto.keys import DecryptionKey
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.site.context import load_site
from gateway.site.keystore import load_site_keys
from tests.component.test_migration_v11 import (
    EXPIRES,
    HANOI,
    HQ,
    PARIS,
    T0,
    OldStore,
    digest,
    mid,
    raw,
    upgraded,
)
from tests.component.test_review11b_migration_receipts import add_received_receipt
from tests.system.test_kept_receipts_recheck import receipt, world  # noqa: F401
from tests.system.test_receipt_relay import World
from tests.system.test_review11d_recheck_rotated_keys import REASON, over, start


def two_stanza_receipt(
    w: World, old: DecryptionKey, names: str, named: bytes, answers: str
) -> tuple[str, bytes, bytes]:
    """M-HANOI's receipt whose document receipts ``names`` and whose head answers
    ``answers``, sealed to M-PARIS under ``old`` first, then its active key."""
    at = T0 + timedelta(minutes=3)
    body = write_receipt(Receipt(names, named, HANOI, at))
    routing = new_routing(
        origin=HANOI,
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
            sender=load_site_keys(w.folder(HANOI) / "keys").signing,
            recipients=[
                Recipient(PARIS, old.public),
                Recipient(PARIS, w.directory.site(PARIS).active_encryption_key()),
            ],
            sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
        ),
        [body],
    )
    return routing.message_id, data, parse_framed_head(data)[0].digest


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_receipt_that_opens_with_a_held_key_is_not_closed_unread(
    world: World,  # noqa: F811
    backend: str,
    tmp_path: Path,
) -> None:
    old = DecryptionKey.generate()
    s = OldStore(10, PARIS)
    hq = receipt(world, HQ, mid(8), digest(8), mid(8))
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
    s.delivery(8, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq, HQ)
    # M-HANOI's receipt: document for 9, head answers 8; v10 verified it (for 9).
    lying = two_stanza_receipt(world, old, mid(9), digest(9), mid(8))
    s.envelope(9, origin=PARIS, destinations=(HANOI,), receipt=lying[1])
    s.delivery(9, HANOI, "delivered", "receipt")
    add_received_receipt(s, *lying, HANOI, at=T0 + timedelta(minutes=6))
    heads = parse_framed_head(lying[1])[0].head.recipients
    assert [x.site for x in heads] == [PARIS, PARIS]

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            ctx = await load_site(world.folder(PARIS))
            await ctx.store.close()
            # OLD retired since (the ring says so, its private file gone); M-PARIS's
            # active key, which the second stanza names, is held and usable.
            keys = replace(ctx.keys, unusable={old.key_id: "retired"})
            ctx = over(ctx, up.store, keys=keys)
            seen = await start(ctx)
            d8 = {x.site: x for x in await up.store.destinations(mid(8))}[HANOI]
            reason8 = await raw(up, REASON, mid(8), HANOI)
            # The document (which names 9) can be read with a key held now: the head-lie
            # must be detected, as for any receipt that can be opened.
            assert d8.state != "delivered", (d8.state, reason8, seen)
            assert seen == []
            assert "answers" in reason8 or "names" in reason8 or "9" in reason8, reason8

    asyncio.run(run())
