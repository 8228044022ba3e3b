"""Keys as typed objects.

A site holds two key pairs for envelopes: a signing pair (Ed25519) and an
encryption pair (ML-KEM-768 + X25519, used through HPKE). Public keys travel as raw
bytes; private keys are stored as their seeds. A key id is a digest of the public
key, so it can be recomputed by anyone and never needs to be trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from crypto import _primitives as p
from crypto.errors import KeyFormatError
from crypto.random import SYSTEM_RANDOM, RandomSource

SIGNING_ALG: KeyAlg = "ed25519"
ENCRYPTION_ALG: KeyAlg = "mlkem768x25519"
KeyAlg = Literal["ed25519", "mlkem768x25519"]

ED25519_PUBLIC_BYTES = 32
ED25519_SEED_BYTES = 32
MLKEM768_PUBLIC_BYTES = 1184
MLKEM768_SEED_BYTES = 64
X25519_BYTES = 32
ENCRYPTION_PUBLIC_BYTES = MLKEM768_PUBLIC_BYTES + X25519_BYTES
# The field of X25519 (RFC 7748): canonical u-coordinates are below it.
X25519_FIELD_PRIME = 2**255 - 19
ENCRYPTION_SEED_BYTES = MLKEM768_SEED_BYTES + X25519_BYTES
KEY_ID_BYTES = 16
KEY_ID_LABEL = b"valise/v1/key-id\x00"


def key_id(alg: KeyAlg, public_bytes: bytes) -> str:
    """The key id of a public key: 32 lowercase hex digits of a labelled SHA-256."""
    digest = hashlib.sha256(KEY_ID_LABEL + alg.encode() + b"\x00" + public_bytes).digest()
    return digest[:KEY_ID_BYTES].hex()


@dataclass(frozen=True)
class VerifyKey:
    """An Ed25519 public key."""

    raw: bytes
    _key: p.ed25519.Ed25519PublicKey = field(repr=False, compare=False)
    key_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(SIGNING_ALG, self.raw))

    @classmethod
    def from_bytes(cls, raw: bytes) -> VerifyKey:
        """Load 32 raw bytes. Raises :class:`KeyFormatError`."""
        if len(raw) != ED25519_PUBLIC_BYTES:
            raise KeyFormatError(f"an ed25519 public key is {ED25519_PUBLIC_BYTES} bytes")
        try:
            key = p.ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyFormatError("not a valid ed25519 public key") from exc
        return cls(raw, key)


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key, kept as its 32-byte seed."""

    seed: bytes = field(repr=False)
    _key: p.ed25519.Ed25519PrivateKey = field(repr=False, compare=False)
    public: VerifyKey

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Load a 32-byte seed. Raises :class:`KeyFormatError`."""
        if len(seed) != ED25519_SEED_BYTES:
            raise KeyFormatError(f"an ed25519 seed is {ED25519_SEED_BYTES} bytes")
        key = p.ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        return cls(seed, key, VerifyKey.from_bytes(key.public_key().public_bytes_raw()))

    @classmethod
    def generate(cls, rng: RandomSource = SYSTEM_RANDOM) -> SigningKey:
        return cls.from_seed(rng.random_bytes(ED25519_SEED_BYTES))

    @property
    def key_id(self) -> str:
        return self.public.key_id


@dataclass(frozen=True)
class EncryptionKey:
    """An HPKE recipient public key: ML-KEM-768 public key followed by X25519."""

    raw: bytes
    _key: p.hpke.MLKEM768X25519PublicKey = field(repr=False, compare=False)
    key_id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(ENCRYPTION_ALG, self.raw))

    @classmethod
    def from_bytes(cls, raw: bytes) -> EncryptionKey:
        """Load the 1216-byte concatenation. Raises :class:`KeyFormatError`."""
        if len(raw) != ENCRYPTION_PUBLIC_BYTES:
            raise KeyFormatError(
                f"an {ENCRYPTION_ALG} public key is {ENCRYPTION_PUBLIC_BYTES} bytes"
            )
        # Only the canonical encoding: an X25519 u-coordinate with its top bit set, or at
        # or above 2^255 - 19, is the same key as a reduced one (RFC 7748 masks the bit),
        # and would give one key a second key id (a second site could list it).
        if int.from_bytes(raw[MLKEM768_PUBLIC_BYTES:], "little") >= X25519_FIELD_PRIME:
            raise KeyFormatError(f"not a canonical {ENCRYPTION_ALG} public key (X25519 part)")
        try:
            kem = p.mlkem.MLKEM768PublicKey.from_public_bytes(raw[:MLKEM768_PUBLIC_BYTES])
            ecdh = p.x25519.X25519PublicKey.from_public_bytes(raw[MLKEM768_PUBLIC_BYTES:])
        except ValueError as exc:
            raise KeyFormatError(f"not a valid {ENCRYPTION_ALG} public key") from exc
        if kem.public_bytes_raw() != raw[:MLKEM768_PUBLIC_BYTES]:
            raise KeyFormatError(f"not a canonical {ENCRYPTION_ALG} public key (ML-KEM part)")
        return cls(raw, p.hpke.MLKEM768X25519PublicKey(kem, ecdh))


@dataclass(frozen=True)
class DecryptionKey:
    """An HPKE recipient private key, kept as its seeds (64 + 32 bytes)."""

    seed: bytes = field(repr=False)
    _key: p.hpke.MLKEM768X25519PrivateKey = field(repr=False, compare=False)
    public: EncryptionKey

    @classmethod
    def from_seed(cls, seed: bytes) -> DecryptionKey:
        """Load the 96-byte seed. Raises :class:`KeyFormatError`."""
        if len(seed) != ENCRYPTION_SEED_BYTES:
            raise KeyFormatError(f"an {ENCRYPTION_ALG} seed is {ENCRYPTION_SEED_BYTES} bytes")
        kem = p.mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:MLKEM768_SEED_BYTES])
        ecdh = p.x25519.X25519PrivateKey.from_private_bytes(seed[MLKEM768_SEED_BYTES:])
        raw_public = kem.public_key().public_bytes_raw() + ecdh.public_key().public_bytes_raw()
        return cls(
            seed, p.hpke.MLKEM768X25519PrivateKey(kem, ecdh), EncryptionKey.from_bytes(raw_public)
        )

    @classmethod
    def generate(cls, rng: RandomSource = SYSTEM_RANDOM) -> DecryptionKey:
        return cls.from_seed(rng.random_bytes(ENCRYPTION_SEED_BYTES))

    @property
    def key_id(self) -> str:
        return self.public.key_id
