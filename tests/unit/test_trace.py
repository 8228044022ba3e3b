"""Hop records chain onto the origin's signature and leave it untouched."""

from __future__ import annotations

import pytest

from envelope.errors import SignatureInvalid
from envelope.framing import frame_prefix
from envelope.head import parse_head
from envelope.open import open_bytes, parse_framed_head
from envelope.trace import append_hop, verify_trace
from tests.conftest import NOW, Site, seal_envelope


def test_appended_hops_verify_and_the_envelope_still_opens(
    hq: Site, paris: Site, hanoi: Site
) -> None:
    data = seal_envelope(paris, [hanoi], [b"via HQ"])
    parsed, offset = parse_framed_head(data)
    _, head_xml = append_hop(parsed, site="HQ", key=hq.signing, received_from="M-PARIS", at=NOW)
    relayed = frame_prefix(head_xml) + head_xml + data[offset:]
    again, _ = parse_framed_head(relayed)
    assert again.digest == parsed.digest  # hops are outside the envelope digest
    verify_trace(again, {"HQ": {hq.signing.key_id: hq.signing.public}})
    _, _, parts = open_bytes(
        relayed, sender=paris.signing.public, site="M-HANOI", key=hanoi.decryption
    )
    assert parts == [b"via HQ"]


def test_a_hop_record_cannot_move_to_another_envelope(hq: Site, paris: Site, hanoi: Site) -> None:
    a, _ = parse_framed_head(seal_envelope(paris, [hanoi], [b"a"], seed=b"a"))
    b, _ = parse_framed_head(seal_envelope(paris, [hanoi], [b"b"], seed=b"b"))
    head_a, _ = append_hop(a, site="HQ", key=hq.signing, received_from="M-PARIS", at=NOW)
    from envelope.head import assemble_head, serialize_trace

    forged = parse_head(assemble_head(b.signed_xml, b.signature_xml, serialize_trace(head_a.trace)))
    with pytest.raises(SignatureInvalid):
        verify_trace(forged, {"HQ": {hq.signing.key_id: hq.signing.public}})


def test_a_hop_record_signed_by_another_sites_key_is_refused(
    hq: Site, paris: Site, hanoi: Site
) -> None:
    parsed, _ = parse_framed_head(seal_envelope(paris, [hanoi], [b"x"]))
    # M-PARIS signs a record claiming to be HQ.
    _, head_xml = append_hop(parsed, site="HQ", key=paris.signing, received_from="M-PARIS", at=NOW)
    keys = {
        "HQ": {hq.signing.key_id: hq.signing.public},
        "M-PARIS": {paris.signing.key_id: paris.signing.public},
    }
    with pytest.raises(SignatureInvalid, match="not a key of HQ"):
        verify_trace(parse_head(head_xml), keys)


def test_unknown_hop_key_is_refused(hq: Site, paris: Site, hanoi: Site) -> None:
    parsed, _ = parse_framed_head(seal_envelope(paris, [hanoi], [b"x"]))
    _, head_xml = append_hop(parsed, site="HQ", key=hq.signing, received_from="M-PARIS", at=NOW)
    with pytest.raises(SignatureInvalid, match="unknown key"):
        verify_trace(parse_head(head_xml), {})
