"""Which copy may take the place of a stored envelope (envelope/replacement.py), and the
chain of sites in a trace (envelope/trace.py check_path): pure, no I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envelope.errors import EnvelopeError
from envelope.model import Head, HopRecord, PartInfo, RecipientStanza, RoutingHeader, SealedHeader
from envelope.open import parse_framed_head
from envelope.replacement import ReplacementRefused, check_replacement
from envelope.reseal import reseal
from envelope.seal import Sealing, new_routing, seal_bytes
from envelope.trace import TraceSpliced, append_hop, check_path, verify_trace
from envelope.values import Priority
from tests.conftest import NOW, Site, make_site

PARIS, EVIL, HANOI = make_site("M-PARIS", 2), make_site("M-EVIL", 5), make_site("M-HANOI", 3)
NEW_HANOI = make_site("M-HANOI", 43)
HQ = make_site("HQ", 1)


def _seal(
    origin: Site, to: list[Site], *, routing: RoutingHeader | None = None, part: bytes = b"x"
) -> tuple[bytes, bytes]:
    routing = routing or new_routing(origin=origin.site, destinations=[s.site for s in to], now=NOW)
    sealing = Sealing(
        routing=routing,
        sender=origin.signing,
        recipients=[s.recipient for s in to],
        sealed=SealedHeader(parts=(PartInfo("note.txt", "text/plain", len(part)),)),
    )
    return seal_bytes(sealing, [part]), sealing.escrow(origin.decryption.public)


def _head(data: bytes) -> Head:
    return parse_framed_head(data)[0].head


def test_the_origins_reseal_may_replace_the_held_copy() -> None:
    data, escrow = _seal(PARIS, [EVIL, HANOI])
    parsed, offset = parse_framed_head(data)
    new = reseal(
        data,
        parsed,
        offset,
        escrow=escrow,
        own_key=PARIS.decryption,
        sender=PARIS.signing,
        recipients=[EVIL.recipient, NEW_HANOI.recipient],
    )
    check_replacement(parsed.head, _head(new.data))


def test_a_co_recipients_envelope_under_the_same_id_is_refused() -> None:
    """M-EVIL's own envelope, message id copied, to M-HANOI's new key (issue 9, hole 1)."""
    data, _ = _seal(PARIS, [EVIL, HANOI], part=b"genuine")
    held = _head(data)
    forged_routing = dataclasses.replace(
        new_routing(origin="M-EVIL", destinations=["M-HANOI"], now=NOW),
        message_id=held.routing.message_id,
    )
    forged, _ = _seal(EVIL, [NEW_HANOI], routing=forged_routing, part=b"forged")
    with pytest.raises(ReplacementRefused, match=r"origin M-PARIS.*says M-EVIL"):
        check_replacement(held, _head(forged))


def test_the_whole_routing_header_counts_even_with_the_same_origin() -> None:
    """Even its origin cannot change what it first signed under that id (a reused id,
    a compromised key replaying a variant): every field is compared."""
    data, _ = _seal(PARIS, [EVIL, HANOI])
    held = _head(data)
    r = held.routing
    variants = {
        "destinations": ("M-HANOI",),
        "created": r.created - timedelta(seconds=1),
        "expires": r.expires + timedelta(days=1),
        "priority": Priority.FLASH,
        "doc_class": "receipt",
        "dossier": "D-1",
        "in_reply_to": "01900000-0000-7000-8000-000000000001",
    }
    assert set(variants) | {"message_id", "origin"} == {f.name for f in dataclasses.fields(r)}
    for name, value in variants.items():
        changed = dataclasses.replace(held, routing=dataclasses.replace(r, **{name: value}))
        with pytest.raises(ReplacementRefused, match=name):
            check_replacement(held, changed)


def test_another_manifest_or_other_wraps_are_refused() -> None:
    data, _ = _seal(PARIS, [EVIL, HANOI], part=b"genuine")
    held = _head(data)
    other, _ = _seal(PARIS, [EVIL, HANOI], routing=held.routing, part=b"altered text")
    with pytest.raises(ReplacementRefused, match="manifest"):
        check_replacement(held, _head(other))
    missing = dataclasses.replace(held, recipients=held.recipients[:1])
    with pytest.raises(ReplacementRefused, match="not to exactly its destinations"):
        check_replacement(held, missing)
    extra = dataclasses.replace(
        held, recipients=(*held.recipients, RecipientStanza("HQ", "k", b"w"))
    )
    with pytest.raises(ReplacementRefused, match="not to exactly its destinations"):
        check_replacement(held, extra)
    assert issubclass(ReplacementRefused, EnvelopeError)


SITES = st.sampled_from(["HQ", "M-PARIS", "M-EVIL", "M-HANOI"])
TIMES = st.integers(0, 3).map(lambda n: datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=n))
ROUTING = st.builds(
    RoutingHeader,
    message_id=st.sampled_from(["01900000-0000-7000-8000-000000000001", "other"]),
    origin=SITES,
    destinations=st.lists(SITES, min_size=1, max_size=2, unique=True).map(tuple),
    created=TIMES,
    expires=TIMES,
    priority=st.sampled_from(list(Priority)),
    doc_class=st.sampled_from(["document", "receipt"]),
    dossier=st.none() | st.just("D-1"),
    in_reply_to=st.none() | st.just("01900000-0000-7000-8000-000000000002"),
)


def _as_head(routing: RoutingHeader, template: Head) -> Head:
    stanzas = tuple(RecipientStanza(site, f"key-{site}", b"w") for site in routing.destinations)
    return dataclasses.replace(template, routing=routing, recipients=stanzas)


TEMPLATE = _head(_seal(PARIS, [HANOI])[0])


@settings(max_examples=300, deadline=None)
@given(held=ROUTING, arriving=ROUTING, same=st.booleans())
def test_property_a_replacement_passes_exactly_when_the_routing_header_is_the_same(
    held: RoutingHeader, arriving: RoutingHeader, same: bool
) -> None:
    if same:
        arriving = held
    try:
        check_replacement(_as_head(held, TEMPLATE), _as_head(arriving, TEMPLATE))
    except ReplacementRefused:
        assert arriving != held
    else:
        assert arriving == held


# -- the chain of sites in a trace ------------------------------------------------------


def _hop(site: str, received_from: str) -> HopRecord:
    return HopRecord(site, "k", NOW, received_from, b"s")


def test_a_relayed_trace_chains_from_the_origin() -> None:
    check_path("M-PARIS", ())
    check_path("M-PARIS", (_hop("HQ", "M-PARIS"),))
    check_path("M-PARIS", (_hop("HQ", "M-PARIS"), _hop("M-HANOI", "HQ")))


def test_a_spliced_from_field_is_refused_with_the_hop_named() -> None:
    with pytest.raises(TraceSpliced, match=r"hop 1 .*M-HANOI.*M-PARIS"):
        check_path("M-PARIS", (_hop("M-EVIL", "M-HANOI"),))
    with pytest.raises(TraceSpliced, match=r"hop 2 \(M-EVIL\).*M-PARIS.*HQ"):
        check_path("M-PARIS", (_hop("HQ", "M-PARIS"), _hop("M-EVIL", "M-PARIS")))


def test_verify_trace_refuses_a_spliced_chain_even_with_good_signatures() -> None:
    """Every signature verifies (each site signed what it wrote), but M-EVIL's record
    claims it came from the origin while the record before it is HQ's."""
    data, _ = _seal(PARIS, [HANOI])
    parsed, _ = parse_framed_head(data)
    head, xml = append_hop(parsed, site="HQ", key=HQ.signing, received_from="M-PARIS", at=NOW)
    from envelope.head import parse_head

    once = parse_head(xml)
    _, xml2 = append_hop(once, site="M-EVIL", key=EVIL.signing, received_from="M-PARIS", at=NOW)
    keys = {
        "HQ": {HQ.signing.key_id: HQ.signing.public},
        "M-EVIL": {EVIL.signing.key_id: EVIL.signing.public},
    }
    verify_trace(once, keys)
    with pytest.raises(TraceSpliced, match="hop 2"):
        verify_trace(parse_head(xml2), keys)
    assert head.trace[0].received_from == "M-PARIS"


@settings(max_examples=300, deadline=None)
@given(origin=SITES, hops=st.lists(st.tuples(SITES, SITES), max_size=4))
def test_property_check_path_accepts_exactly_the_chained_traces(
    origin: str, hops: list[tuple[str, str]]
) -> None:
    trace = tuple(_hop(site, came_from) for site, came_from in hops)
    chained = all(
        came_from == (hops[i - 1][0] if i else origin) for i, (_, came_from) in enumerate(hops)
    )
    try:
        check_path(origin, trace)
    except TraceSpliced:
        assert not chained
    else:
        assert chained
