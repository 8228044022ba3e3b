"""Review 11c, F2 follow-up: the v11 migration step trusts a kept receipt's plain
``in-reply-to`` although v10 never checked it.

v10's origin verified a receipt against the *signed receipt document* (the message it
names, its site, its digest) and never compared the envelope's plain routing header
``in-reply-to`` with it (that check, check_origin_receipt ``answers=``, came with v11,
commit f148f27). So a v10 store can hold, acked ``receipt``, an envelope from M-HANOI
whose signed document receipts message 8 while its plain head says it answers
message 10. The migration step (gateway/store/migrate_v11.py attribute) reads only
the plain head, so it closes (10, M-HANOI) ``delivered`` with that receipt: message 10,
which M-HANOI never receipted, reads delivered, its expiry will never fail it, and its
evidence holds a receipt for another message. v10 recorded that receipt for message
8 (its bytes are envelopes.receipt of message 8): the store itself says so.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.component.test_migration_v11 import (
    HANOI,
    PARIS,
    T0,
    OldStore,
    digest,
    mid,
    upgraded,
)
from tests.component.test_review11b_migration_receipts import (
    add_received_receipt,
    receipt_envelope,
)


def lying_receipt(
    signer: str, names: str, named: bytes, head_answers: str
) -> tuple[str, bytes, bytes]:
    """A receipt envelope whose signed document receipts ``names`` (digest of it) while
    its plain routing header answers ``head_answers``."""
    return receipt_envelope(signer, names, named, head_answers, T0)


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_kept_receipt_whose_head_answers_another_message_closes_nothing_else(
    backend: str, start: int, tmp_path: Path
) -> None:
    s = OldStore(start, PARIS)
    rid, data, dig = lying_receipt(HANOI, mid(8), digest(8), head_answers=mid(10))
    # v10 verified the signed document (message 8, M-HANOI, digest 8) and recorded it
    # for message 8, the one it names ...
    s.envelope(8, origin=PARIS, destinations=(HANOI,), receipt=data)
    s.delivery(8, HANOI, "delivered", "receipt")
    s.history(8, HANOI, "delivered", "receipt", T0 + timedelta(minutes=4))
    add_received_receipt(s, rid, data, dig, HANOI)
    # ... while message 10 to M-HANOI was never receipted: still forwarded, open.
    s.envelope(10, origin=PARIS, destinations=(HANOI,))
    s.delivery(10, HANOI, "forwarded", "")
    async with upgraded(backend, s, tmp_path) as up:
        d8 = {d.site: d for d in await up.store.destinations(mid(8))}
        assert d8[HANOI].state == "delivered"
        d10 = {d.site: d for d in await up.store.destinations(mid(10))}
        # M-HANOI signed no receipt for message 10: it must not read delivered.
        assert d10[HANOI].state != "delivered", (d10[HANOI].state, d10[HANOI].reason)
        assert await up.store.destination_receipt(mid(10), HANOI) is None


@pytest.mark.parametrize("start", [6, 10])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_second_kept_receipt_whose_head_answers_another_message_closes_nothing(
    backend: str, start: int, tmp_path: Path
) -> None:
    """The same lie in a circular's second receipt: its bytes are in no
    envelopes.receipt, so only opening it (or not trusting the plain head) can tell."""
    from tests.component.test_migration_v11 import HQ
    from tests.component.test_review11b_migration_receipts import real_receipt

    s = OldStore(start, PARIS)
    hq = real_receipt(HQ, mid(8), digest(8))
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
    s.delivery(8, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq, HQ)
    # M-HANOI's receipt of message 8 (v10 verified the document), its head answering 10.
    add_received_receipt(s, *lying_receipt(HANOI, mid(8), digest(8), head_answers=mid(10)), HANOI)
    s.envelope(10, origin=PARIS, destinations=(HANOI,))
    s.delivery(10, HANOI, "forwarded", "")
    async with upgraded(backend, s, tmp_path) as up:
        d10 = {d.site: d for d in await up.store.destinations(mid(10))}
        assert d10[HANOI].state != "delivered", (d10[HANOI].state, d10[HANOI].reason)
