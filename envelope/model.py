"""The values of an envelope, as frozen dataclasses.

These are what crosses the boundary between the format and the gateway. Building
one does not validate it; :mod:`envelope.head` checks every field when it writes
or reads bytes, so a value that could not round-trip never leaves this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from envelope.values import Priority


@dataclass(frozen=True)
class RoutingHeader:
    """What a relay needs, in the clear and signed."""

    message_id: str
    origin: str
    destinations: tuple[str, ...]
    created: datetime
    expires: datetime
    priority: Priority = Priority.ROUTINE
    doc_class: str = "document"
    dossier: str | None = None
    in_reply_to: str | None = None


@dataclass(frozen=True)
class RecipientStanza:
    """The content key wrapped with HPKE to one key of one destination site."""

    site: str
    key_id: str
    wrapped: bytes


@dataclass(frozen=True)
class Segment:
    """One binary segment after the XML: its exact ciphertext length and SHA-256."""

    length: int
    sha256: bytes


@dataclass(frozen=True)
class Manifest:
    """The sealed header segment, then one segment per payload part, in file order."""

    sealed_header: Segment
    parts: tuple[Segment, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return (self.sealed_header, *self.parts)

    @property
    def total_length(self) -> int:
        return sum(s.length for s in self.segments)


@dataclass(frozen=True)
class HopRecord:
    """A relay's signed statement that it accepted the envelope from ``received_from``."""

    site: str
    key_id: str
    at: datetime
    received_from: str
    signature: bytes


@dataclass(frozen=True)
class Head:
    """The XML head of an envelope, as parsed or as written."""

    routing: RoutingHeader
    recipients: tuple[RecipientStanza, ...]
    manifest: Manifest
    signature_key_id: str
    signature: bytes
    trace: tuple[HopRecord, ...] = ()


@dataclass(frozen=True)
class PartInfo:
    """What the sealed header says of one part."""

    name: str
    media_type: str
    size: int


@dataclass(frozen=True)
class SealedHeader:
    """Everything a relay does not need; only recipients can read it."""

    parts: tuple[PartInfo, ...]
    subject: str | None = None
    originator: str | None = None
    # The recipient mailbox at the destination site (the SMTP bridge's RCPT local
    # part, or an integrator's routing hint); None means the site's default.
    mailbox: str | None = None
