"""Re-sealing at the origin (envelope/reseal.py): new stanzas and signature over the
same ciphertext, opened with the new key only; the escrow opens with the origin's key
only, and never passes for a stanza."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.keys import DecryptionKey
from envelope.errors import DecryptionFailed, NotRecipient, UsageError
from envelope.model import PartInfo, SealedHeader
from envelope.open import open_bytes, parse_framed_head
from envelope.reseal import reseal
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from tests.conftest import NOW, Site, make_site

PARTS = [b"note verbale " * 1000, b"annex"]


def _sealed(origin: Site, to: Site) -> tuple[bytes, bytes]:
    routing = new_routing(origin=origin.site, destinations=[to.site], now=NOW)
    sealing = Sealing(
        routing=routing,
        sender=origin.signing,
        recipients=[to.recipient],
        sealed=SealedHeader(
            parts=tuple(PartInfo(f"p{i}", "text/plain", len(p)) for i, p in enumerate(PARTS))
        ),
    )
    data = seal_bytes(sealing, PARTS)
    return data, sealing.escrow(origin.decryption.public)


def test_a_resealed_envelope_opens_with_the_new_key_only(paris: Site, hanoi: Site) -> None:
    data, escrow = _sealed(paris, hanoi)
    new_hanoi = make_site("M-HANOI", 40)
    parsed, offset = parse_framed_head(data)
    new = reseal(
        data,
        parsed,
        offset,
        escrow=escrow,
        own_key=paris.decryption,
        sender=paris.signing,
        recipients=[new_hanoi.recipient],
    )
    # The ciphertext is untouched; the head (stanzas, signature, digest) is new.
    assert new.data[-len(data) + offset :] == data[offset:]
    assert new.digest != parsed.digest
    head, _sealed_header, parts = open_bytes(
        new.data, sender=paris.signing.public, site="M-HANOI", key=new_hanoi.decryption
    )
    assert parts == PARTS and head.digest == new.digest
    assert head.head.routing == parsed.head.routing
    with pytest.raises(NotRecipient):
        open_bytes(new.data, sender=paris.signing.public, site="M-HANOI", key=hanoi.decryption)


def test_the_escrow_opens_with_the_origins_key_only(paris: Site, hanoi: Site) -> None:
    data, escrow = _sealed(paris, hanoi)
    parsed, offset = parse_framed_head(data)
    for wrong in (hanoi.decryption, DecryptionKey.generate()):
        with pytest.raises(DecryptionFailed):
            reseal(
                data,
                parsed,
                offset,
                escrow=escrow,
                own_key=wrong,
                sender=paris.signing,
                recipients=[hanoi.recipient],
            )


def test_a_stanza_is_not_an_escrow(paris: Site, hanoi: Site) -> None:
    # A wrap made for a recipient (wrap info label) does not open as an escrow, even
    # under the very key it was made for.
    data, _ = _sealed(paris, paris)
    parsed, offset = parse_framed_head(data)
    stanza = parsed.head.recipients[0].wrapped
    with pytest.raises(DecryptionFailed):
        reseal(
            data,
            parsed,
            offset,
            escrow=stanza,
            own_key=paris.decryption,
            sender=paris.signing,
            recipients=[paris.recipient],
        )


def test_recipients_must_be_the_destinations(paris: Site, hanoi: Site, hq: Site) -> None:
    data, escrow = _sealed(paris, hanoi)
    parsed, offset = parse_framed_head(data)
    for recipients in ([], [hq.recipient], [hanoi.recipient, hq.recipient]):
        with pytest.raises(UsageError):
            reseal(
                data,
                parsed,
                offset,
                escrow=escrow,
                own_key=paris.decryption,
                sender=paris.signing,
                recipients=recipients,
            )


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_any_changed_escrow_byte_is_refused(position: int, flip: int) -> None:
    paris, hanoi = make_site("M-PARIS", 2), make_site("M-HANOI", 3)
    data, escrow = _sealed(paris, hanoi)
    i = position % len(escrow)
    bad = escrow[:i] + bytes([escrow[i] ^ flip]) + escrow[i + 1 :]
    parsed, offset = parse_framed_head(data)
    with pytest.raises(DecryptionFailed):
        reseal(
            data,
            parsed,
            offset,
            escrow=bad,
            own_key=paris.decryption,
            sender=paris.signing,
            recipients=[Recipient("M-HANOI", hanoi.decryption.public)],
        )
