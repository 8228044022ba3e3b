"""Typed errors of the envelope layer, in two families by blame (as h11 does).

- :class:`EnvelopeError` and its subclasses: the input is at fault (a peer's
  garbage, a forged or damaged envelope). Each carries one clear line.
- :class:`UsageError`: the caller is at fault (a bad argument, a value that cannot
  be expressed in the format). Raised before anything is written.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A caller asked for something the format cannot express."""


class EnvelopeError(Exception):
    """Base of every error caused by the bytes we were given."""


class FramingError(EnvelopeError):
    """Bad magic, truncated data, trailing data or segment lengths that do not add up."""


class LimitExceeded(EnvelopeError):
    """A named limit of envelope/limits.py was exceeded."""


class MalformedXML(EnvelopeError):
    """Not well-formed XML, or a forbidden construct (DTD, entity, PI, comment)."""


class SchemaError(EnvelopeError):
    """Well-formed XML that the shipped XSD or the format's rules reject."""


class NonCanonical(EnvelopeError):
    """Valid, but not in the one canonical byte form, so it cannot be what was signed."""


class SignatureInvalid(EnvelopeError):
    """The origin's (or a hop's) signature does not verify, or names the wrong key."""


class NotRecipient(EnvelopeError):
    """No recipient stanza is addressed to the key we hold."""


class DecryptionFailed(EnvelopeError):
    """Opaque: the envelope could not be decrypted. Says nothing about which check failed."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class DigestMismatch(EnvelopeError):
    """A segment's ciphertext does not match the digest in the signed manifest."""
