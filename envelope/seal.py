"""Sealing: one content key, one wrap per recipient, STREAM-encrypted segments, one signature.

The streaming form (:class:`Sealing`) lets the caller write parts of any size in
constant memory: the head's exact length is known before the payload is read
(digests are fixed-width), so a writer reserves it, streams the segments after it,
then writes the head once the digests are known. :func:`seal_bytes` does the same
in memory for small envelopes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from crypto.keys import EncryptionKey, SigningKey
from crypto.random import SYSTEM_RANDOM, RandomSource
from crypto.recipes import (
    CHUNK_BYTES,
    SIGNATURE_BYTES,
    StreamSealer,
    chunk_count,
    ciphertext_size,
    new_content_key,
    part_key,
    seal_segment,
    sign,
    wrap,
)
from envelope import limits
from envelope.errors import EnvelopeError, UsageError
from envelope.framing import frame_prefix
from envelope.head import (
    SIGNATURE_LABEL,
    assemble_head,
    check_fields,
    envelope_digest,
    serialize_signature,
    serialize_signed,
    serialize_trace,
)
from envelope.model import Manifest, RecipientStanza, RoutingHeader, SealedHeader, Segment
from envelope.sealed import serialize_sealed
from envelope.values import Priority, new_message_id, truncate_to_second

WRAP_INFO_LABEL = b"valise/v1/wrap\x00"
ESCROW_INFO_LABEL = b"valise/v1/escrow\x00"
DEFAULT_TTL = timedelta(days=30)
_ZERO_DIGEST = bytes(32)
_ZERO_SIGNATURE = bytes(SIGNATURE_BYTES)

WrapFn = Callable[[bytes, EncryptionKey, bytes], bytes]


@dataclass(frozen=True)
class Recipient:
    """A destination site and the encryption key to wrap the content key to."""

    site: str
    key: EncryptionKey


def wrap_info(message_id: str, site: str, key_id: str) -> bytes:
    """HPKE ``info``: binds a wrap to its envelope, site and key."""
    return WRAP_INFO_LABEL + f"{message_id}\x00{site}\x00{key_id}".encode()


def escrow_info(message_id: str, key_id: str) -> bytes:
    """HPKE ``info`` of the origin's escrow wrap: a label of its own, so an escrow can
    never pass for a recipient stanza, nor a stanza for an escrow."""
    return ESCROW_INFO_LABEL + f"{message_id}\x00{key_id}".encode()


def new_routing(
    *,
    origin: str,
    destinations: Sequence[str],
    now: datetime,
    rng: RandomSource = SYSTEM_RANDOM,
    expires: datetime | None = None,
    priority: Priority = Priority.ROUTINE,
    doc_class: str = "document",
    dossier: str | None = None,
    in_reply_to: str | None = None,
) -> RoutingHeader:
    """A routing header with a fresh UUIDv7 message id."""
    created = truncate_to_second(now)
    return RoutingHeader(
        message_id=new_message_id(now, rng.random_bytes(10)),
        origin=origin,
        destinations=tuple(destinations),
        created=created,
        expires=truncate_to_second(expires) if expires else created + DEFAULT_TTL,
        priority=priority,
        doc_class=doc_class,
        dossier=dossier,
        in_reply_to=in_reply_to,
    )


class Sealing:
    """One envelope being sealed. Raises :class:`UsageError` for anything inexpressible."""

    def __init__(
        self,
        *,
        routing: RoutingHeader,
        sender: SigningKey,
        recipients: Sequence[Recipient],
        sealed: SealedHeader,
        rng: RandomSource = SYSTEM_RANDOM,
        wrap_fn: WrapFn = wrap,
    ) -> None:
        if {r.site for r in recipients} != set(routing.destinations):
            raise UsageError("every destination needs a recipient key, and only destinations")
        if len(recipients) > limits.MAX_RECIPIENT_STANZAS:
            raise UsageError(f"more than {limits.MAX_RECIPIENT_STANZAS} recipients")
        self.routing = routing
        self.sealed = sealed
        self._sender = sender
        self._content_key = new_content_key(rng)
        self.stanzas = tuple(
            RecipientStanza(
                site=r.site,
                key_id=r.key.key_id,
                wrapped=wrap_fn(
                    self._content_key, r.key, wrap_info(routing.message_id, r.site, r.key.key_id)
                ),
            )
            for r in recipients
        )
        try:
            self.sealed_header_ciphertext = seal_segment(
                part_key(self._content_key, 0), serialize_sealed(sealed)
            )
            self._sealed_segment = Segment(
                len(self.sealed_header_ciphertext),
                hashlib.sha256(self.sealed_header_ciphertext).digest(),
            )
            # Check every field now, so that a value the format cannot carry fails
            # here, before the caller has written anything.
            check_fields(routing, self.stanzas, self._manifest(self._zero_digests))
        except EnvelopeError as exc:
            raise UsageError(str(exc)) from None

    def escrow(self, key: EncryptionKey) -> bytes:
        """The content key wrapped to ``key`` (the origin's own encryption key), for
        re-sealing later (envelope/reseal.py); never part of the envelope."""
        return wrap(self._content_key, key, escrow_info(self.routing.message_id, key.key_id))

    @property
    def _zero_digests(self) -> tuple[bytes, ...]:
        return tuple(_ZERO_DIGEST for _ in self.sealed.parts)

    @property
    def head_bytes(self) -> int:
        """The exact length of the framed head, known before any part is read.

        Digests and the signature are fixed-width, so a head built with zeros in
        their place has the final head's length.
        """
        head_xml = assemble_head(
            self._signed_xml(self._zero_digests),
            serialize_signature(self._sender.key_id, _ZERO_SIGNATURE),
            serialize_trace(()),
        )
        return len(frame_prefix(head_xml)) + len(head_xml)

    @property
    def message_id(self) -> str:
        return self.routing.message_id

    @property
    def part_ciphertext_sizes(self) -> tuple[int, ...]:
        return tuple(ciphertext_size(p.size) for p in self.sealed.parts)

    def part_sealer(self, index: int) -> StreamSealer:
        """The STREAM sealer of part ``index`` (1-based, in sealed-header order)."""
        if not 1 <= index <= len(self.sealed.parts):
            raise UsageError(f"no part {index}")
        return StreamSealer(part_key(self._content_key, index))

    def _manifest(self, part_digests: Sequence[bytes]) -> Manifest:
        return Manifest(
            sealed_header=self._sealed_segment,
            parts=tuple(
                Segment(size, digest)
                for size, digest in zip(self.part_ciphertext_sizes, part_digests, strict=True)
            ),
        )

    def _signed_xml(self, part_digests: Sequence[bytes]) -> bytes:
        # The fields were checked in __init__; only the digests differ since.
        manifest = self._manifest(part_digests)
        return serialize_signed(self.routing, self.stanzas, manifest, check=False)

    def finish(self, part_digests: Sequence[bytes]) -> bytes:
        """The framed head (exactly ``head_bytes`` long) once every part's SHA-256 is known."""
        if len(part_digests) != len(self.sealed.parts):
            raise UsageError("one digest per part")
        if any(len(d) != len(_ZERO_DIGEST) for d in part_digests):
            raise UsageError("a part digest is a 32-byte SHA-256")
        signed_xml = self._signed_xml(part_digests)
        signature = sign(self._sender, SIGNATURE_LABEL + signed_xml)
        signature_xml = serialize_signature(self._sender.key_id, signature)
        self.signature = signature
        self.digest = envelope_digest(signed_xml, signature_xml)
        head_xml = assemble_head(signed_xml, signature_xml, serialize_trace(()))
        return frame_prefix(head_xml) + head_xml


def seal_parts(sealing: Sealing, index: int, plaintext: bytes) -> bytes:
    """Seal a part held in memory (its size must match the sealed header)."""
    if len(plaintext) != sealing.sealed.parts[index - 1].size:
        raise UsageError(f"part {index} is not the size the sealed header states")
    sealer = sealing.part_sealer(index)
    view = memoryview(plaintext)
    n = chunk_count(len(plaintext))
    return b"".join(
        sealer.seal(view[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES], last=i == n - 1)
        for i in range(n)
    )


def seal_bytes(sealing: Sealing, parts: Sequence[bytes]) -> bytes:
    """A whole envelope in memory: framed head, sealed header, parts."""
    if len(parts) != len(sealing.sealed.parts):
        raise UsageError("one plaintext per part")
    ciphertexts = [seal_parts(sealing, i + 1, p) for i, p in enumerate(parts)]
    head = sealing.finish([hashlib.sha256(c).digest() for c in ciphertexts])
    return b"".join([head, sealing.sealed_header_ciphertext, *ciphertexts])
