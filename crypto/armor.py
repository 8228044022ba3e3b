"""Private key files: one seed, base64, between labelled lines (PEM-like, strict).

    -----BEGIN VALISE ED25519 PRIVATE KEY-----
    <base64 of the seed, one line>
    -----END VALISE ED25519 PRIVATE KEY-----

The reader accepts exactly this form (LF line ends, one trailing LF) and nothing
else, so a damaged file fails loudly instead of loading a different key.
"""

from __future__ import annotations

import base64
import binascii

from crypto.errors import KeyFormatError
from crypto.keys import ENCRYPTION_ALG, SIGNING_ALG, DecryptionKey, KeyAlg, SigningKey

_LABELS: dict[KeyAlg, str] = {SIGNING_ALG: "ED25519", ENCRYPTION_ALG: "MLKEM768X25519"}
MAX_ARMOR_BYTES = 1024


def _lines(alg: KeyAlg) -> tuple[str, str]:
    label = _LABELS[alg]
    return (
        f"-----BEGIN VALISE {label} PRIVATE KEY-----",
        f"-----END VALISE {label} PRIVATE KEY-----",
    )


def armor(key: SigningKey | DecryptionKey) -> bytes:
    alg = SIGNING_ALG if isinstance(key, SigningKey) else ENCRYPTION_ALG
    begin, end = _lines(alg)
    return f"{begin}\n{base64.b64encode(key.seed).decode()}\n{end}\n".encode()


def _dearmor(data: bytes, alg: KeyAlg) -> bytes:
    if len(data) > MAX_ARMOR_BYTES:
        raise KeyFormatError("key file too large")
    begin, end = _lines(alg)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFormatError("key file is not ASCII") from None
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != begin or lines[2] != end or lines[3] != "":
        raise KeyFormatError(f"not a {alg} private key file")
    try:
        seed = base64.b64decode(lines[1], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("key file body is not base64") from None
    if base64.b64encode(seed).decode() != lines[1]:
        raise KeyFormatError("key file body is not canonical base64")
    return seed


def load_signing_key(data: bytes) -> SigningKey:
    """Raises :class:`KeyFormatError`."""
    return SigningKey.from_seed(_dearmor(data, SIGNING_ALG))


def load_decryption_key(data: bytes) -> DecryptionKey:
    """Raises :class:`KeyFormatError`."""
    return DecryptionKey.from_seed(_dearmor(data, ENCRYPTION_ALG))
