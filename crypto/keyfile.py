"""Private key files encrypted under a passphrase, at rest.

    -----BEGIN VALISE ENCRYPTED PRIVATE KEY-----
    <base64 of: version (1) | log2 N (1) | salt (16) | nonce (12) | ciphertext + tag>
    -----END VALISE ENCRYPTED PRIVATE KEY-----

The plaintext is the whole key file as it would be written unencrypted (a Valise seed
armor from :mod:`crypto.armor`, or a PKCS#8 PEM: TLS, CA and TSA keys), so one format
covers every private key a site holds and the key loaders stay as they are.

Rules:
- The key is scrypt(passphrase, salt, N = 2**log2 N, r = 8, p = 1), 32 bytes; the cipher
  ChaCha20-Poly1305, with the header line and the five header fields as associated
  data. (PKCS#8's BestAvailableEncryption is PBKDF2 with 2,048 iterations and CBC:
  too cheap to guess against, and unauthenticated; age's scrypt stanza is the model.)
- A writer uses ``SCRYPT_LOG_N``; a reader accepts ``SCRYPT_MIN_LOG_N`` to
  ``SCRYPT_MAX_LOG_N``, so a future writer may cost more and a hostile file cannot
  ask for unbounded memory or for a cost too low to matter.
- A wrong passphrase and a tampered file are the same :class:`WrongPassphrase`: which
  one it was is not said. A file that is not in this form is a KeyFormatError.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.errors import CryptoError, KeyFormatError
from crypto.random import SYSTEM_RANDOM, RandomSource

BEGIN = b"-----BEGIN VALISE ENCRYPTED PRIVATE KEY-----"
END = b"-----END VALISE ENCRYPTED PRIVATE KEY-----"
VERSION = 1
SCRYPT_LOG_N = 15  # 32 MiB and about 0.1 s per key file read
SCRYPT_MIN_LOG_N = 15
SCRYPT_MAX_LOG_N = 20  # 1 GiB: the most a reader will spend on one file
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
HEADER_BYTES = 2 + SALT_BYTES + NONCE_BYTES
MAX_PLAINTEXT_BYTES = 8192  # the largest key file this wraps (a PKCS#8 PEM is < 300)
MAX_ENCRYPTED_FILE_BYTES = 16384
LINE_CHARS = 64


class WrongPassphrase(CryptoError):
    """The passphrase does not open this key file (or the file was altered). Nothing more."""

    def __init__(self) -> None:
        super().__init__("the passphrase does not open this key file")


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` is a key file in this module's form (by its first line)."""
    return data.startswith(BEGIN + b"\n")


def _derive(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=2**log_n, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase)


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeyFormatError("an empty passphrase protects nothing")


def encrypt_key_file(
    plaintext: bytes, passphrase: bytes, *, rng: RandomSource = SYSTEM_RANDOM
) -> bytes:
    """The key file ``plaintext`` encrypted under ``passphrase``. Raises KeyFormatError
    for an empty passphrase, an oversized or an already encrypted file."""
    _check_passphrase(passphrase)
    if is_encrypted(plaintext):
        raise KeyFormatError("the key file is encrypted already")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise KeyFormatError("key file too large")
    salt, nonce = rng.random_bytes(SALT_BYTES), rng.random_bytes(NONCE_BYTES)
    header = bytes([VERSION, SCRYPT_LOG_N]) + salt + nonce
    key = _derive(passphrase, salt, SCRYPT_LOG_N)
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext, BEGIN + header)
    body = base64.b64encode(header + sealed)
    lines = [body[i : i + LINE_CHARS] for i in range(0, len(body), LINE_CHARS)]
    return b"\n".join([BEGIN, *lines, END]) + b"\n"


def decrypt_key_file(data: bytes, passphrase: bytes) -> bytes:
    """The plaintext key file inside ``data``. Raises :class:`WrongPassphrase`, or
    KeyFormatError when ``data`` is not an encrypted key file of a version we read."""
    _check_passphrase(passphrase)
    if len(data) > MAX_ENCRYPTED_FILE_BYTES:
        raise KeyFormatError("encrypted key file too large")
    lines = data.split(b"\n")
    if len(lines) < 4 or lines[0] != BEGIN or lines[-2] != END or lines[-1] != b"":
        raise KeyFormatError("not an encrypted Valise key file")
    try:
        raw = base64.b64decode(b"".join(lines[1:-2]), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("encrypted key file body is not base64") from None
    if len(raw) < HEADER_BYTES + 16:
        raise KeyFormatError("encrypted key file too short")
    version, log_n = raw[0], raw[1]
    if version != VERSION:
        raise KeyFormatError(f"encrypted key file version {version} is not supported")
    if not SCRYPT_MIN_LOG_N <= log_n <= SCRYPT_MAX_LOG_N:
        raise KeyFormatError(
            f"encrypted key file scrypt cost 2**{log_n} is outside "
            f"2**{SCRYPT_MIN_LOG_N}..2**{SCRYPT_MAX_LOG_N}"
        )
    header, sealed = raw[:HEADER_BYTES], raw[HEADER_BYTES:]
    salt, nonce = header[2 : 2 + SALT_BYTES], header[2 + SALT_BYTES :]
    key = _derive(passphrase, salt, log_n)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed, BEGIN + header)
    except InvalidTag:
        raise WrongPassphrase() from None
