"""Seal then open, in memory: sizes around the chunk boundary, parts, recipients."""

from __future__ import annotations

import pytest

from crypto.recipes import CHUNK_BYTES
from envelope.errors import NotRecipient, SignatureInvalid
from envelope.open import open_bytes
from tests.conftest import Site, make_site, seal_envelope


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES, 3 * CHUNK_BYTES + 7],
)
def test_round_trip_sizes(hq: Site, paris: Site, size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = seal_envelope(hq, [paris], [payload])
    parsed, sealed, parts = open_bytes(
        data, sender=hq.signing.public, site=paris.site, key=paris.decryption
    )
    assert parts == [payload]
    assert sealed.parts[0].size == size
    assert sealed.subject == "Note verbale"
    assert parsed.head.routing.origin == "HQ"
    assert parsed.head.routing.destinations == ("M-PARIS",)


def test_several_parts_keep_order_names_and_types(hq: Site, paris: Site) -> None:
    payloads = [b"first", b"", b"x" * (CHUNK_BYTES + 3), "é ü".encode()]
    names = ["note.txt", "empty", "big.bin", "unicode-ñ.txt"]
    data = seal_envelope(hq, [paris], payloads, names=names)
    _, sealed, parts = open_bytes(
        data, sender=hq.signing.public, site=paris.site, key=paris.decryption
    )
    assert parts == payloads
    assert [p.name for p in sealed.parts] == names


def test_no_parts_at_all(hq: Site, paris: Site) -> None:
    data = seal_envelope(hq, [paris], [])
    _, sealed, parts = open_bytes(
        data, sender=hq.signing.public, site=paris.site, key=paris.decryption
    )
    assert parts == [] and sealed.parts == ()


def test_one_envelope_to_97_recipients_every_one_opens(hq: Site) -> None:
    sites = [make_site(f"M-{i:03d}", 10 + i) for i in range(97)]
    data = seal_envelope(hq, sites, [b"circular to all missions"])
    for site in sites:
        _, _, parts = open_bytes(
            data, sender=hq.signing.public, site=site.site, key=site.decryption
        )
        assert parts == [b"circular to all missions"]


def test_payload_is_encrypted_once_for_many_recipients(hq: Site) -> None:
    one = seal_envelope(hq, [make_site("M-001", 11)], [b"z" * 100_000])
    many = seal_envelope(
        hq, [make_site(f"M-{i:03d}", 10 + i) for i in range(1, 6)], [b"z" * 100_000]
    )
    # Five recipients add four wraps to the head, not four copies of the payload.
    assert len(many) - len(one) < 4 * 2000


def test_non_recipient_cannot_open(hq: Site, paris: Site, hanoi: Site) -> None:
    data = seal_envelope(hq, [paris], [b"secret"])
    with pytest.raises(NotRecipient):
        open_bytes(data, sender=hq.signing.public, site=hanoi.site, key=hanoi.decryption)
    # Claiming to be the recipient site with another key is no better.
    with pytest.raises(NotRecipient):
        open_bytes(data, sender=hq.signing.public, site=paris.site, key=hanoi.decryption)


def test_wrong_sender_key_is_rejected(hq: Site, paris: Site, hanoi: Site) -> None:
    data = seal_envelope(hq, [paris], [b"secret"])
    with pytest.raises(SignatureInvalid):
        open_bytes(data, sender=hanoi.signing.public, site=paris.site, key=paris.decryption)


def test_each_seal_uses_a_fresh_content_key_and_id(hq: Site, paris: Site) -> None:
    a = seal_envelope(hq, [paris], [b"same"], seed=b"a")
    b = seal_envelope(hq, [paris], [b"same"], seed=b"b")
    assert a[-20:] != b[-20:]
