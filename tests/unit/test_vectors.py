"""The SPEC.md test vectors, checked byte for byte.

Provenance: tests/vectors/make_vectors.py wrote tests/vectors/v1/*.valise and
*.json from constant seeds. Everything but the HPKE encapsulations is
deterministic, so re-sealing with the same seeds while replaying the recorded
wraps must give back the committed file exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crypto.keys import DecryptionKey, EncryptionKey, SigningKey
from crypto.recipes import open_segment, seal_segment, unwrap
from envelope.open import open_bytes, parse_framed_head
from envelope.seal import wrap_info
from tests.vectors.make_vectors import SITES, VECTORS, build

HERE = Path(__file__).parents[1] / "vectors" / "v1"


@pytest.fixture(params=[v.name for v in VECTORS])
def vector(request: pytest.FixtureRequest) -> tuple[object, bytes, dict[str, object]]:
    v = next(v for v in VECTORS if v.name == request.param)
    data = (HERE / f"{v.name}.valise").read_bytes()
    meta = json.loads((HERE / f"{v.name}.json").read_text())
    return v, data, meta


def test_key_ids_follow_from_the_seeds(vector: tuple[object, bytes, dict]) -> None:  # type: ignore[type-arg]
    _, _, meta = vector
    for site, info in meta["sites"].items():
        assert (
            SigningKey.from_seed(bytes.fromhex(info["signing_seed"])).key_id
            == info["signing_key_id"]
        )
        enc = DecryptionKey.from_seed(bytes.fromhex(info["encryption_seed"]))
        assert enc.key_id == info["encryption_key_id"]
        assert SITES[site].decryption.key_id == info["encryption_key_id"]


def test_vector_opens_for_every_destination(vector: tuple[object, bytes, dict]) -> None:  # type: ignore[type-arg]
    _v, data, meta = vector
    assert hashlib.sha256(data).hexdigest() == meta["file_sha256"]
    for site in meta["destinations"]:
        parsed, sealed, parts = open_bytes(
            data,
            sender=SITES[meta["origin"]].signing.public,
            site=site,
            key=SITES[site].decryption,
        )
        assert parsed.head.routing.message_id == meta["message_id"]
        assert parsed.digest.hex() == meta["envelope_sha256"]
        assert hashlib.sha256(parsed.signed_xml).hexdigest() == meta["signed_xml_sha256"]
        assert sealed.subject == meta["subject"]
        assert [hashlib.sha256(p).hexdigest() for p in parts] == [
            p["sha256"] for p in meta["parts"]
        ]


def test_wraps_open_to_the_recorded_content_key(vector: tuple[object, bytes, dict]) -> None:  # type: ignore[type-arg]
    _, data, meta = vector
    parsed, _ = parse_framed_head(data)
    for stanza in parsed.head.recipients:
        key = SITES[stanza.site].decryption
        info = wrap_info(meta["message_id"], stanza.site, stanza.key_id)
        assert unwrap(stanza.wrapped, key, info).hex() == meta["content_key"]


def test_segments_are_stream_ciphertexts_under_the_recorded_keys(
    vector: tuple[object, bytes, dict],  # type: ignore[type-arg]
) -> None:
    _v, data, meta = vector
    offset = meta["segments_offset"]
    segments = []
    for length in meta["segment_lengths"]:
        segments.append(data[offset : offset + length])
        offset += length
    assert offset == len(data)
    for key_hex, ciphertext in zip(meta["segment_keys"][1:], segments[1:], strict=True):
        plaintext = open_segment(bytes.fromhex(key_hex), ciphertext)
        assert seal_segment(bytes.fromhex(key_hex), plaintext) == ciphertext


def test_resealing_with_the_seeds_reproduces_the_file_byte_for_byte(
    vector: tuple[object, bytes, dict],  # type: ignore[type-arg]
) -> None:
    v, data, meta = vector
    parsed, _ = parse_framed_head(data)
    recorded = {(s.site, s.key_id): s.wrapped for s in parsed.head.recipients}

    def replay(content_key: bytes, key: EncryptionKey, info: bytes) -> bytes:
        assert content_key.hex() == meta["content_key"]
        site = next(s for s, k in recorded if k == key.key_id)
        assert info == wrap_info(meta["message_id"], site, key.key_id)
        return recorded[(site, key.key_id)]

    again, content_key = build(v, wrap_fn=replay)  # type: ignore[arg-type]
    assert content_key.hex() == meta["content_key"]
    assert again == data
