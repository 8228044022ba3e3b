"""Typed errors of the crypto layer.

Rules:
- Failures raise; nothing here returns False.
- Every decryption failure (wrong key, tampered wrap, bad tag, truncated stream)
  is the same :class:`DecryptionError` with the same message, so a caller cannot
  learn which check failed.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every error raised by :mod:`crypto`."""


class DecryptionError(CryptoError):
    """The ciphertext could not be decrypted. Deliberately says nothing more."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class SignatureError(CryptoError):
    """A signature did not verify under the expected public key."""


class KeyFormatError(CryptoError):
    """Key bytes or a key file are not in the expected form."""
