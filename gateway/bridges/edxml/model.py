"""The edXML document as the gateway sees it: frozen values, no I/O.

Rules:
- Text fields hold the folded text as written ("" when absent); dates are parsed
  (None when absent or not a date, the raw text kept beside the DueDate).
- ``header_xml`` is the whole document as the sender wrote it with every
  ContentTransferEncoded emptied (the placeholder of its attachment): it is sealed
  as the part HEADER_PART_NAME and is what the destination exports back.
- ``attachments`` are in the document order of their ContentTransferEncoded, which
  is the order of the placeholders in ``header_xml``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path


class Kind(enum.Enum):
    """What a message is: TraceHeaderList/Bussiness/BussinessDocType 0-3, or a status
    (MessageHeader/StatusCode with ResponseFor). The numbers follow the real files:
    1 "Thu hồi" (revocation), 2 "Cập nhật" (update), 3 "Thay thế" (replacement)."""

    NEW = "new"
    REVOCATION = "revocation"
    UPDATE = "update"
    REPLACEMENT = "replacement"
    STATUS = "status"


BUSINESS_DOC_TYPES = {"0": Kind.NEW, "1": Kind.REVOCATION, "2": Kind.UPDATE, "3": Kind.REPLACEMENT}


@dataclass(frozen=True)
class Party:
    organ_id: str
    organ_name: str


@dataclass(frozen=True)
class ResponseFor:
    """The document a status message answers."""

    organ_id: str
    code: str
    document_id: str
    promulgation_date: date | None


@dataclass(frozen=True)
class ReplacementInfo:
    """One ReplacementInfo: a document this one revokes, replaces or updates, and the
    organs it went to."""

    document_id: str
    organ_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeclaredPart:
    """What the markup says of one attachment (reader.describe): the same at
    submission (Attachment) and at the receiver (the kept header read back)."""

    content_id: str
    name: str
    description: str
    media_type: str
    declared_types: tuple[str, ...]  # every ContentType written for it, lower case


@dataclass(frozen=True)
class Attachment:
    content_id: str  # as the Attachment (else the Reference) writes it, with or without cid:
    name: str
    media_type: str  # the Attachment's own ContentType, else the Reference's
    description: str
    size: int
    sha256: str
    zipped: bool  # the SDK's ZIP of the file (see zips.py), not the file itself
    declared_types: tuple[str, ...] = ()  # every ContentType written for it, lower case
    path: Path | None = None  # the decoded file (parse_edxml_file)
    content: bytes | None = field(default=None, repr=False)  # the bytes (parse_edxml in memory)

    @property
    def data(self) -> bytes:
        """The attachment's bytes: held in memory, or read from ``path``."""
        if self.content is not None:
            return self.content
        if self.path is None:
            return b""
        return self.path.read_bytes()


@dataclass(frozen=True)
class EdxmlDocument:
    kind: Kind
    sender: Party
    recipients: tuple[Party, ...]  # To, in order; empty for a status
    document_id: str
    code_number: str
    code_notation: str
    subject: str
    document_type: str  # DocumentType/Type
    document_type_name: str
    promulgation_date: date | None
    due_date: date | None
    due_date_text: str
    priority: str  # OtherInfo/Priority as written
    steering_type: str
    business_document_id: str  # TraceHeaderList/Bussiness/DocumentId
    business_reason: str
    replacement_info: tuple[ReplacementInfo, ...]
    response_for: ResponseFor | None
    status_code: str
    status_description: str
    status_time: datetime | None
    attachments: tuple[Attachment, ...]
    header_xml: bytes
    notes: tuple[str, ...] = ()  # what was ignored, one line each (a DueDate that is no date)
