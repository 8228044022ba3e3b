"""Review 11b: the v11 migration drops the verified receipts of a circular's other
destinations, which a v10 store still holds.

In v10 every receipt the origin verified was acked with the reason ``receipt`` and its
envelope kept (class receipt, signed by the destination, ``in-reply-to`` the message in
its plain head); only the first one's bytes went into ``envelopes.receipt``. The
migration attributes that one (by its bytes) and leaves every other destination of the
circular open with "no receipt of its own recorded before v11": a circular delivered to
both its destinations, both receipts verified and kept here, comes out "partially
delivered (1 of 2)", its hop goes back to ``forwarded``, and expiry then *fails* a
destination whose verified receipt is in the store (failed webhook, DSN, completed with
a failure).

Review 11c: v10 never compared a kept receipt's plain ``in-reply-to`` with the signed
receipt inside, and the store cannot open it; so the migration now closes nothing from
a plain head. It leaves each row such a receipt answers open, waiting for the first
start to re-check it with the site's key (reason ``receipt kept before v11:
re-checking``), and nothing fails a waiting row. These tests check what the migration
leaves (receipts sealed to throw-away keys); tests/integration/
test_kept_receipts_recheck.py checks the first start, with the sites' real keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crypto.keys import DecryptionKey, SigningKey
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.store._common import RECHECK_REASON
from tests.component.test_migration_v11 import (
    EXPIRES,
    HANOI,
    HQ,
    NO_OWN,
    PARIS,
    ROME,
    T0,
    OldStore,
    digest,
    mid,
    raw,
    upgraded,
)


def real_receipt(signer: str, answers: str, envelope_digest: bytes) -> tuple[str, bytes, bytes]:
    """A genuine receipt envelope from ``signer`` for message ``answers``: (its id, its
    bytes, its digest)."""
    return receipt_envelope(signer, answers, envelope_digest, answers, T0 + timedelta(minutes=3))


def receipt_envelope(
    signer: str, names: str, named: bytes, head_answers: str, at: datetime
) -> tuple[str, bytes, bytes]:
    """A receipt envelope whose signed document (dated ``at``) receipts ``names``
    (digest ``named``) while its plain routing header answers ``head_answers``."""
    body = write_receipt(Receipt(names, named, signer, at))
    routing = new_routing(
        origin=signer,
        destinations=[PARIS],
        now=T0 + timedelta(minutes=3),
        expires=EXPIRES,
        priority=Priority.IMMEDIATE,
        doc_class=RECEIPT_CLASS,
        in_reply_to=head_answers,
    )
    data = seal_bytes(
        Sealing(
            routing=routing,
            sender=SigningKey.generate(),
            recipients=[Recipient(PARIS, DecryptionKey.generate().public)],
            sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
        ),
        [body],
    )
    return routing.message_id, data, parse_framed_head(data)[0].digest


def add_received_receipt(
    s: OldStore,
    rid: str,
    data: bytes,
    dig: bytes,
    signer: str,
    *,
    at: datetime = T0 + timedelta(minutes=4),
    reason: str = "receipt",
) -> None:
    """The receipt envelope as v10 kept it at the origin: stored, acked ``reason``
    ('receipt': verified) at ``at``."""
    s.add(
        "envelopes",
        message_id=rid,
        origin=signer,
        destinations=(PARIS,),
        digest=dig,
        created=T0,
        expires=EXPIRES,
        priority="immediate",
        received_from=HQ,
        size=len(data),
        data=data,
        hop_ack=b"ack",
        receipt=None,
        accepted_at=T0 + timedelta(minutes=3),
        doc_class="receipt",
        chain=None,
        stamp_pending=False,
        escrow=None,
    )
    s.add("inbound", message_id=rid, state="acked", received_at=T0, updated_at=at)
    s.add("history", message_id=rid, peer=None, state="received", reason="", at=T0)
    s.add("history", message_id=rid, peer=None, state="acked", reason=reason, at=at)


def fully_receipted_circular(start: int = 10) -> OldStore:
    s = OldStore(start, PARIS)
    x = mid(8)
    hq_id, hq_data, hq_digest = real_receipt(HQ, x, digest(8))
    hanoi_id, hanoi_data, hanoi_digest = real_receipt(HANOI, x, digest(8))
    # v10 recorded the first verified receipt (HQ's) in envelopes.receipt ...
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq_data)
    s.delivery(8, HQ, "delivered", "receipt")
    s.history(8, HQ, "delivered", "receipt", T0 + timedelta(minutes=4))
    # ... and verified and kept both receipt envelopes.
    add_received_receipt(s, hq_id, hq_data, hq_digest, HQ)
    add_received_receipt(s, hanoi_id, hanoi_data, hanoi_digest, HANOI)
    return s


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_v10_circular_with_every_receipt_verified_waits_and_is_not_failed(
    backend: str, start: int, tmp_path: Path
) -> None:
    async with upgraded(backend, fully_receipted_circular(start), tmp_path) as up:
        store = up.store
        dests = {d.site: d for d in await store.destinations(mid(8))}
        assert dests[HQ].state == "delivered"
        # M-HANOI's verified receipt is in this store: its row waits for the re-check ...
        row = "SELECT reason FROM destinations WHERE message_id = $1 AND site = $2"
        assert await raw(up, row, mid(8), HANOI) == RECHECK_REASON
        # ... and expiry must not fail a destination whose receipt waits to be re-checked.
        closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
        assert [c for c in closed if c.message_id == mid(8)] == []
        assert await raw(up, row, mid(8), HANOI) == RECHECK_REASON


def odd_receipts(start: int) -> tuple[OldStore, bytes]:
    """Kept receipt envelopes that must not be attributed, or only with care; and the
    digest of M-HANOI's first receipt for message 8."""
    s = OldStore(start, PARIS)
    x = mid(8)
    hq = real_receipt(HQ, x, digest(8))
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI, ROME), receipt=hq[1])
    s.delivery(8, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq, HQ)
    # M-HANOI's receipt came twice (v10 did not refuse a second one): the first stands,
    # though the second is listed first.
    later = real_receipt(HANOI, x, digest(8))
    first = real_receipt(HANOI, x, digest(8))
    add_received_receipt(s, *later, HANOI, at=T0 + timedelta(minutes=9))
    add_received_receipt(s, *first, HANOI, at=T0 + timedelta(minutes=5))
    # M-ROME's receipt was refused (acked with another reason): it stays open.
    refused = "undeliverable: receipt digest does not match the envelope sent"
    add_received_receipt(s, *real_receipt(ROME, x, digest(8)), ROME, reason=refused)
    # 9: a document received here, not sent from here: a co-recipient's receipt for it,
    # kept here, attributes nothing.
    s.envelope(9, origin=HANOI, destinations=(PARIS, HQ), received_from=HQ)
    s.inbound(9, "available")
    add_received_receipt(s, *real_receipt(HQ, mid(9), digest(9)), HQ)
    # 12: a circular re-sealed here (v10: a superseded copy) before M-HANOI's receipt came.
    hq12 = real_receipt(HQ, mid(12), digest(12))
    s.envelope(12, origin=PARIS, destinations=(HQ, HANOI), receipt=hq12[1])
    s.delivery(12, HQ, "delivered", "receipt")
    if start >= 10:
        s.rows[-3][1]["superseded"] = digest(13).hex()
    add_received_receipt(s, *hq12, HQ)
    add_received_receipt(s, *real_receipt(HANOI, mid(12), digest(13)), HANOI)
    return s, first[2]


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_only_verified_kept_receipts_mark_their_rows_to_recheck(
    backend: str, start: int, tmp_path: Path
) -> None:
    old, _first = odd_receipts(start)
    async with upgraded(backend, old, tmp_path) as up:
        store = up.store
        dests = {d.site: d for d in await store.destinations(mid(8))}
        assert dests[HQ].state == "delivered"
        # M-HANOI's two kept receipts: its row waits, none of them recorded yet (the first
        # start takes the first acknowledged: test_kept_receipts_recheck.py).
        hanoi = dests[HANOI]
        assert (hanoi.state, hanoi.receipt_digest, hanoi.receipt_for) == ("forwarded", None, None)
        assert await store.destination_receipt(mid(8), HANOI) is None
        row = "SELECT reason FROM destinations WHERE message_id = $1 AND site = $2"
        assert await raw(up, row, mid(8), HANOI) == RECHECK_REASON
        # M-ROME's refused receipt counts nothing: its row stays open, its hop forwarded.
        rome = ("forwarded", "v11: 1 of 3 destinations receipted")
        assert (dests[ROME].state, dests[ROME].reason) == rome
        assert await raw(up, row, mid(8), ROME) == NO_OWN
        assert await store.destinations(mid(9)) == []
        d12 = {d.site: d for d in await store.destinations(mid(12))}
        assert d12[HANOI].state == "forwarded"
        assert await raw(up, row, mid(12), HANOI) == RECHECK_REASON
        done = await raw(up, "SELECT completed_at FROM envelopes WHERE message_id = $1", mid(12))
        assert done is None
        # Expiry fails M-ROME (open, nothing kept for it) but not the waiting rows.
        closed = await store.expire(now=EXPIRES + timedelta(seconds=1))
        assert sorted((c.message_id, c.sites) for c in closed if c.message_id == mid(8)) == [
            (mid(8), (ROME,))
        ]
        assert [c for c in closed if c.message_id == mid(12)] == []
