"""Write the format v1 test vectors of envelope/SPEC.md into tests/vectors/v1/.

Run: ``make vectors`` (``python -m tests.vectors.make_vectors``). Keys come from
constant seeds and every random value from ``FixedRandom(seed)``; only the HPKE
encapsulations are random (pyca/cryptography offers no seam there), so each run
writes new wraps and hence new files. The committed files are the reference: the
test opens them and re-seals them byte for byte, replaying their recorded wraps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto.keys import DecryptionKey, SigningKey
from crypto.random import FixedRandom
from crypto.recipes import part_key
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.seal import Recipient, Sealing, WrapFn, new_routing, seal_bytes
from envelope.values import Priority

HERE = Path(__file__).parent / "v1"
NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class VectorSite:
    site: str
    signing_seed: bytes
    encryption_seed: bytes

    @property
    def signing(self) -> SigningKey:
        return SigningKey.from_seed(self.signing_seed)

    @property
    def decryption(self) -> DecryptionKey:
        return DecryptionKey.from_seed(self.encryption_seed)


SITES = {
    "HQ": VectorSite("HQ", bytes(range(32)), bytes(range(96))),
    "M-PARIS": VectorSite("M-PARIS", bytes(range(32, 64)), bytes(range(96, 192))),
    "M-HANOI": VectorSite("M-HANOI", bytes(range(64, 96)), bytes(i % 256 for i in range(192, 288))),
}


@dataclass(frozen=True)
class Vector:
    name: str
    origin: str
    destinations: tuple[str, ...]
    parts: tuple[tuple[str, str, bytes], ...]
    subject: str | None
    priority: Priority = Priority.ROUTINE
    doc_class: str = "document"
    dossier: str | None = None

    @property
    def rng_seed(self) -> bytes:
        return f"valise/v1/vector/{self.name}".encode()


VECTORS = (
    Vector(
        "basic",
        "HQ",
        ("M-PARIS",),
        (("hello.txt", "text/plain", b"Hello, Valise!\n"),),
        "Test vector 1",
    ),
    Vector(
        "two_recipients_chunked",
        "M-PARIS",
        ("HQ", "M-HANOI"),
        (
            ("empty.bin", "application/octet-stream", b""),
            ("pattern.bin", "application/octet-stream", bytes(i % 251 for i in range(65537))),
        ),
        'Circulaire n° 7 — <escaped> & "quoted"',
        Priority.IMMEDIATE,
        "circular",
        "CIRC/2026/007",
    ),
)


def build(vector: Vector, wrap_fn: WrapFn | None = None) -> tuple[bytes, bytes]:
    """Seal ``vector``; return the envelope and the content key it used."""
    rng = FixedRandom(vector.rng_seed)
    routing = new_routing(
        origin=vector.origin,
        destinations=vector.destinations,
        now=NOW,
        rng=rng,
        priority=vector.priority,
        doc_class=vector.doc_class,
        dossier=vector.dossier,
    )
    sealed = SealedHeader(
        parts=tuple(PartInfo(n, t, len(d)) for n, t, d in vector.parts), subject=vector.subject
    )
    kwargs = {} if wrap_fn is None else {"wrap_fn": wrap_fn}
    sealing = Sealing(
        routing=routing,
        sender=SITES[vector.origin].signing,
        recipients=[Recipient(s, SITES[s].decryption.public) for s in vector.destinations],
        sealed=sealed,
        rng=rng,
        **kwargs,
    )
    return seal_bytes(sealing, [d for _, _, d in vector.parts]), sealing._content_key


def describe(vector: Vector, data: bytes, content_key: bytes) -> dict[str, object]:
    parsed, offset = parse_framed_head(data)
    segments = parsed.head.manifest.segments
    return {
        "name": vector.name,
        "now": NOW.isoformat(),
        "rng_seed": vector.rng_seed.decode(),
        "sites": {
            s: {
                "signing_seed": SITES[s].signing_seed.hex(),
                "encryption_seed": SITES[s].encryption_seed.hex(),
                "signing_key_id": SITES[s].signing.key_id,
                "encryption_key_id": SITES[s].decryption.key_id,
            }
            for s in (vector.origin, *vector.destinations)
        },
        "origin": vector.origin,
        "destinations": list(vector.destinations),
        "message_id": parsed.head.routing.message_id,
        "content_key": content_key.hex(),
        "segment_keys": [part_key(content_key, i).hex() for i in range(len(segments))],
        "head_offset": 12,
        "head_length": offset - 12,
        "segments_offset": offset,
        "segment_lengths": [s.length for s in segments],
        "signed_xml_sha256": hashlib.sha256(parsed.signed_xml).hexdigest(),
        "signature": parsed.head.signature.hex(),
        "envelope_sha256": parsed.digest.hex(),
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "parts": [
            {"name": n, "media_type": t, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for n, t, d in vector.parts
        ],
        "subject": vector.subject,
    }


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for vector in VECTORS:
        data, content_key = build(vector)
        (HERE / f"{vector.name}.valise").write_bytes(data)
        (HERE / f"{vector.name}.json").write_text(
            json.dumps(describe(vector, data, content_key), indent=2, ensure_ascii=False) + "\n"
        )
        print(f"wrote {vector.name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
