"""Re-signing at the origin (envelope/reseal.py resign): a new origin signature with
the origin's current signing key over the same routing header, stanzas and manifest;
the copy verifies under the new key only, opens with the same recipient key, and is
a legitimate replacement of the stored one (envelope/replacement.py)."""

from __future__ import annotations

import pytest

from crypto.errors import SignatureError
from envelope.errors import EnvelopeError
from envelope.open import open_bytes, parse_framed_head
from envelope.replacement import check_replacement
from envelope.reseal import resign
from tests.conftest import Site, make_site
from tests.unit.test_reseal import PARTS, _sealed


def test_a_resigned_envelope_verifies_under_the_new_key_only(paris: Site, hanoi: Site) -> None:
    data, _escrow = _sealed(paris, hanoi)
    parsed, offset = parse_framed_head(data)
    new_paris = make_site("M-PARIS", 41)
    new = resign(data, parsed, offset, sender=new_paris.signing)
    again, _ = parse_framed_head(new.data)
    assert new.data[-len(data) + offset :] == data[offset:]
    assert new.digest != parsed.digest and again.digest == new.digest
    assert again.head.signature_key_id == new_paris.signing.key_id
    assert again.head.recipients == parsed.head.recipients
    assert again.head.trace == ()
    check_replacement(parsed.head, again.head)
    _head, _sealed_header, parts = open_bytes(
        new.data, sender=new_paris.signing.public, site="M-HANOI", key=hanoi.decryption
    )
    assert parts == PARTS
    with pytest.raises((EnvelopeError, SignatureError)):
        open_bytes(new.data, sender=paris.signing.public, site="M-HANOI", key=hanoi.decryption)
