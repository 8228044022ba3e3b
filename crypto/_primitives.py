"""Hazmat: the primitive calls, and nothing else.

Only :mod:`crypto.keys` and :mod:`crypto.recipes` import this module. The suite is
fixed by format version 1; there is no negotiation and nothing to configure.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "HPKE_SUITE",
    "ChaCha20Poly1305",
    "InvalidSignature",
    "InvalidTag",
    "ed25519",
    "hkdf_sha256",
    "hpke",
    "mlkem",
    "x25519",
]

# HPKE (RFC 9180) base mode, hybrid post-quantum KEM: ML-KEM-768 + X25519.
HPKE_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 with an empty salt (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)
