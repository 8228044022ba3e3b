"""Hypothesis properties: tampering anywhere is rejected; parsers raise only typed errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.armor import load_decryption_key, load_signing_key
from crypto.errors import KeyFormatError
from crypto.recipes import CHUNK_BYTES
from envelope.errors import EnvelopeError
from envelope.head import parse_head
from envelope.keydoc import parse_public_key_doc
from envelope.open import open_bytes, parse_framed_head
from envelope.sealed import parse_sealed
from tests.conftest import make_site, seal_envelope

HQ = make_site("HQ", 1)
PARIS = make_site("M-PARIS", 2)
# Two parts, the second over one chunk, so every kind of region is present:
# prefix, head XML, sealed header, a one-chunk part, a two-chunk part.
ENVELOPE = seal_envelope(HQ, [PARIS], [b"short part", bytes(CHUNK_BYTES + 5)])
HEAD_END = 12 + int.from_bytes(ENVELOPE[8:12], "big")
HEAD = ENVELOPE[12:HEAD_END]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def opens(data: bytes) -> list[bytes]:
    return open_bytes(data, sender=HQ.signing.public, site=PARIS.site, key=PARIS.decryption)[2]


def test_the_untouched_envelope_opens() -> None:
    assert opens(ENVELOPE) == [b"short part", bytes(CHUNK_BYTES + 5)]


# Positions are drawn from the whole envelope and, separately, from the head,
# where most of the structure is, so that both are covered densely.
positions = st.one_of(
    st.integers(0, len(ENVELOPE) - 1), st.integers(0, HEAD_END - 1), st.integers(0, 40)
)


@PROPERTY
@given(pos=positions, delta=st.integers(1, 255))
def test_any_single_byte_change_is_rejected(pos: int, delta: int) -> None:
    data = bytearray(ENVELOPE)
    data[pos] = (data[pos] + delta) % 256
    with pytest.raises(EnvelopeError):
        opens(bytes(data))


@PROPERTY
@given(
    pos=st.one_of(st.integers(0, len(ENVELOPE)), st.integers(0, HEAD_END)), byte=st.integers(0, 255)
)
def test_any_insertion_is_rejected(pos: int, byte: int) -> None:
    data = ENVELOPE[:pos] + bytes([byte]) + ENVELOPE[pos:]
    with pytest.raises(EnvelopeError):
        opens(data)


@PROPERTY
@given(pos=positions)
def test_any_deletion_is_rejected(pos: int) -> None:
    with pytest.raises(EnvelopeError):
        opens(ENVELOPE[:pos] + ENVELOPE[pos + 1 :])


@PROPERTY
@given(length=st.integers(0, len(ENVELOPE) - 1))
def test_any_truncation_is_rejected(length: int) -> None:
    with pytest.raises(EnvelopeError):
        opens(ENVELOPE[:length])


@PROPERTY
@given(extra=st.binary(min_size=1, max_size=64))
def test_any_trailing_data_is_rejected(extra: bytes) -> None:
    with pytest.raises(EnvelopeError):
        opens(ENVELOPE + extra)


@PROPERTY
@given(data=st.binary(max_size=4096))
def test_framed_parser_raises_only_typed_errors_on_arbitrary_bytes(data: bytes) -> None:
    for candidate in (data, b"VALISE\x00\x01" + len(data).to_bytes(4, "big") + data):
        with contextlib.suppress(EnvelopeError):
            parse_framed_head(candidate)


# XML-looking noise reaches deeper into the parser than random bytes.
xml_pieces = st.sampled_from(
    [
        b"<",
        b">",
        b"</",
        b"/>",
        b"=",
        b'"',
        b"envelope",
        b"signed",
        b"routing",
        b"to",
        b"id",
        b'xmlns="urn:valise:1"',
        b'version="1"',
        b"&amp;",
        b"&#0;",
        b"&x;",
        b"<!DOCTYPE x>",
        b"<?pi?>",
        b"<!--c-->",
        b"<![CDATA[x]]>",
        b" ",
        b"\n",
        b"HQ",
        b"\xff",
        b"\x00",
        b"v:",
        b'xmlns:v="urn:valise:1"',
        b"sealed",
        b"public-key",
        b"keys",
        b"part",
    ]
)


@PROPERTY
@given(pieces=st.lists(xml_pieces, max_size=60))
def test_xml_parsers_raise_only_typed_errors_on_xml_noise(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    for parse in (parse_head, parse_sealed, parse_public_key_doc):
        with contextlib.suppress(EnvelopeError):
            parse(data)


@PROPERTY
@given(pos=st.integers(0, len(HEAD)), noise=st.lists(xml_pieces, min_size=1, max_size=5))
def test_spliced_noise_in_a_reframed_head_is_rejected(pos: int, noise: list[bytes]) -> None:
    # The length prefix is fixed up, so the splice reaches the parser and the signature.
    head = HEAD[:pos] + b"".join(noise) + HEAD[pos:]
    data = ENVELOPE[:8] + len(head).to_bytes(4, "big") + head + ENVELOPE[HEAD_END:]
    with pytest.raises(EnvelopeError):
        opens(data)


@PROPERTY
@given(data=st.binary(max_size=512))
def test_key_file_parsers_raise_only_key_format_errors(data: bytes) -> None:
    for load in (load_signing_key, load_decryption_key):
        with contextlib.suppress(KeyFormatError):
            load(data)
