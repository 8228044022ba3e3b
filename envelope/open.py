"""Opening: framing, head, signature, then (and only then) the content key and the segments.

Rules:
- The origin's signature is verified before any decryption; nothing past the head
  is decrypted until it has.
- A segment is released to the caller only after its ciphertext digest matched
  the signed manifest and its last chunk authenticated; the streaming caller must
  hold back what it decrypted until :meth:`Opening.check_part` passes.
- Every decryption failure is the same :class:`DecryptionFailed`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from crypto.errors import DecryptionError, SignatureError
from crypto.keys import DecryptionKey, VerifyKey
from crypto.recipes import (
    CHUNK_CIPHERTEXT_BYTES,
    StreamOpener,
    chunk_count,
    open_segment,
    part_key,
    plaintext_size,
    unwrap,
    verify,
)
from envelope.errors import (
    DecryptionFailed,
    DigestMismatch,
    FramingError,
    NotRecipient,
    SchemaError,
    SignatureInvalid,
)
from envelope.framing import PREFIX_BYTES, read_prefix
from envelope.head import ParsedHead, parse_head
from envelope.model import SealedHeader, Segment
from envelope.seal import wrap_info
from envelope.sealed import parse_sealed


def parse_framed_head(data: bytes) -> tuple[ParsedHead, int]:
    """Parse the prefix and head at the start of ``data``; return it and where segments start."""
    length = read_prefix(data[:PREFIX_BYTES])
    end = PREFIX_BYTES + length
    if len(data) < end:
        raise FramingError("truncated: the head is incomplete")
    return parse_head(data[PREFIX_BYTES:end]), end


def verify_origin(parsed: ParsedHead, sender: VerifyKey) -> None:
    """Check the origin's signature against ``sender``. Raises :class:`SignatureInvalid`."""
    if parsed.head.signature_key_id != sender.key_id:
        raise SignatureInvalid(
            f"signed by key {parsed.head.signature_key_id}, not the sender's key {sender.key_id}"
        )
    try:
        verify(sender, parsed.head.signature, parsed.signed_message)
    except SignatureError:
        raise SignatureInvalid("the origin's signature does not verify") from None


def chunk_layout(ciphertext_length: int) -> Iterator[tuple[int, bool]]:
    """The (ciphertext length, is-last) of each chunk of a segment of this length."""
    n = chunk_count(plaintext_size(ciphertext_length))
    for _ in range(n - 1):
        yield CHUNK_CIPHERTEXT_BYTES, False
    yield ciphertext_length - (n - 1) * CHUNK_CIPHERTEXT_BYTES, True


def check_digest(segment: Segment, ciphertext_digest: bytes, what: str) -> None:
    if not hmac.compare_digest(segment.sha256, ciphertext_digest):
        raise DigestMismatch(f"{what} does not match the signed manifest")


@dataclass(frozen=True)
class Opening:
    """An envelope whose origin signature verified and whose content key we unwrapped."""

    parsed: ParsedHead
    _content_key: bytes

    @classmethod
    def start(
        cls, parsed: ParsedHead, *, sender: VerifyKey, site: str, key: DecryptionKey
    ) -> Opening:
        """Verify, then unwrap. Raises SignatureInvalid, NotRecipient or DecryptionFailed."""
        verify_origin(parsed, sender)
        head = parsed.head
        if head.routing.origin is None:  # pragma: no cover - the schema requires it
            raise SchemaError("no origin")
        stanza = next(
            (s for s in head.recipients if s.site == site and s.key_id == key.key_id), None
        )
        if stanza is None:
            raise NotRecipient(f"no recipient stanza for site {site} key {key.key_id}")
        try:
            content_key = unwrap(
                stanza.wrapped, key, wrap_info(head.routing.message_id, site, key.key_id)
            )
        except DecryptionError:
            raise DecryptionFailed() from None
        return cls(parsed, content_key)

    def open_sealed_header(self, ciphertext: bytes) -> SealedHeader:
        """Check, decrypt and parse segment 0, and check it agrees with the manifest."""
        manifest = self.parsed.head.manifest
        check_digest(
            manifest.sealed_header, hashlib.sha256(ciphertext).digest(), "the sealed header"
        )
        try:
            plaintext = open_segment(part_key(self._content_key, 0), ciphertext)
        except DecryptionError:
            raise DecryptionFailed() from None
        sealed = parse_sealed(plaintext)
        if len(sealed.parts) != len(manifest.parts):
            raise SchemaError("the sealed header and the manifest disagree on the parts")
        for info, segment in zip(sealed.parts, manifest.parts, strict=True):
            if plaintext_size(segment.length) != info.size:
                raise SchemaError(f"part {info.name!r}: sealed size and manifest length disagree")
        return sealed

    def part_opener(self, index: int) -> StreamOpener:
        """The STREAM opener of part ``index`` (1-based)."""
        return StreamOpener(part_key(self._content_key, index))

    def check_part(self, index: int, ciphertext_digest: bytes) -> None:
        check_digest(self.parsed.head.manifest.parts[index - 1], ciphertext_digest, f"part {index}")


def open_bytes(
    data: bytes, *, sender: VerifyKey, site: str, key: DecryptionKey
) -> tuple[ParsedHead, SealedHeader, list[bytes]]:
    """Open a whole envelope held in memory. Raises an :class:`EnvelopeError` subclass."""
    parsed, offset = parse_framed_head(data)
    sealed, parts = open_parsed(data, parsed, offset, sender=sender, site=site, key=key)
    return parsed, sealed, parts


def open_parsed(
    data: bytes,
    parsed: ParsedHead,
    offset: int,
    *,
    sender: VerifyKey,
    site: str,
    key: DecryptionKey,
) -> tuple[SealedHeader, list[bytes]]:
    """:func:`open_bytes` of an envelope whose head the caller has parsed already
    (``parsed, offset = parse_framed_head(data)``), without parsing it again."""
    manifest = parsed.head.manifest
    if len(data) != offset + manifest.total_length:
        raise FramingError(
            "truncated envelope" if len(data) < offset + manifest.total_length else "trailing data"
        )
    opening = Opening.start(parsed, sender=sender, site=site, key=key)
    view = memoryview(data)
    sealed_len = manifest.sealed_header.length
    sealed = opening.open_sealed_header(bytes(view[offset : offset + sealed_len]))
    offset += sealed_len
    parts = []
    for index, segment in enumerate(manifest.parts, start=1):
        ciphertext = view[offset : offset + segment.length]
        opening.check_part(index, hashlib.sha256(ciphertext).digest())
        opener = opening.part_opener(index)
        chunks = []
        pos = 0
        try:
            for size, last in chunk_layout(segment.length):
                chunks.append(opener.open(ciphertext[pos : pos + size], last=last))
                pos += size
        except DecryptionError:
            raise DecryptionFailed() from None
        parts.append(b"".join(chunks))
        offset += segment.length
    return sealed, parts
