"""The sealed header: subject, originator and part descriptions, inside the encryption."""

from __future__ import annotations

import re
from collections.abc import Sequence

from envelope import limits
from envelope import xmlsafe as x
from envelope.errors import LimitExceeded, SchemaError
from envelope.model import PartInfo, SealedHeader

MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def sealed_header(
    parts: Sequence[PartInfo],
    subject: str | None = None,
    originator: str | None = None,
    mailbox: str | None = None,
) -> SealedHeader:
    """The one way a sealed header is made from what a sender gives: checked as
    :func:`check_sealed` checks it (raises SchemaError / LimitExceeded), so a bridge can
    refuse what could not be sealed before it stages anything, with the same header the
    seal will carry."""
    sealed = SealedHeader(tuple(parts), subject, originator, mailbox)
    check_sealed(sealed)
    return sealed


def check_sealed(sealed: SealedHeader) -> None:
    """Raise :class:`SchemaError` / :class:`LimitExceeded` unless ``sealed`` is expressible."""
    if len(sealed.parts) > limits.MAX_PARTS:
        raise LimitExceeded(f"more than {limits.MAX_PARTS} parts")
    if sealed.subject is not None:
        x.check_text(sealed.subject, "the subject")
        if len(sealed.subject) > limits.MAX_SUBJECT_CHARS:
            raise LimitExceeded(f"the subject exceeds {limits.MAX_SUBJECT_CHARS} characters")
    if sealed.originator is not None:
        x.check_text(sealed.originator, "the originator")
        if len(sealed.originator) > limits.MAX_ORIGINATOR_CHARS:
            raise LimitExceeded(f"the originator exceeds {limits.MAX_ORIGINATOR_CHARS} characters")
    if sealed.mailbox is not None:
        x.check_text(sealed.mailbox, "the mailbox")
        if not sealed.mailbox or len(sealed.mailbox) > limits.MAX_ORIGINATOR_CHARS:
            raise LimitExceeded(
                f"the mailbox must be 1 to {limits.MAX_ORIGINATOR_CHARS} characters"
            )
    for part in sealed.parts:
        x.check_text(part.name, "a part name")
        if not part.name or len(part.name.encode()) > limits.MAX_NAME_BYTES:
            raise SchemaError(f"a part name must be 1 to {limits.MAX_NAME_BYTES} bytes")
        if MEDIA_TYPE_RE.fullmatch(part.media_type) is None:
            raise SchemaError(f"media type {part.media_type!r} is not valid")
        if not 0 <= part.size <= limits.MAX_PART_BYTES:
            raise LimitExceeded(f"a part exceeds {limits.MAX_PART_BYTES} bytes")


def serialize_sealed(sealed: SealedHeader) -> bytes:
    check_sealed(sealed)
    out = [x.start("sealed", [("version", "1")], root=True)]
    if sealed.subject is not None:
        out.append(x.leaf("subject", sealed.subject))
    if sealed.originator is not None:
        out.append(x.leaf("originator", sealed.originator))
    if sealed.mailbox is not None:
        out.append(x.leaf("mailbox", sealed.mailbox))
    for part in sealed.parts:
        out.append(
            "<part>"
            + x.leaf("name", part.name)
            + x.leaf("media-type", part.media_type)
            + x.leaf("size", str(part.size))
            + "</part>"
        )
    out.append("</sealed>")
    return "".join(out).encode()


def parse_sealed(data: bytes) -> SealedHeader:
    """Parse a decrypted sealed header. Raises an :class:`EnvelopeError` subclass."""
    root = x.parse(data, root="sealed", max_bytes=limits.MAX_SEALED_HEADER_BYTES)
    sealed = SealedHeader(
        subject=x.optional_text(root, "subject"),
        originator=x.optional_text(root, "originator"),
        mailbox=x.optional_text(root, "mailbox"),
        parts=tuple(
            PartInfo(
                name=x.text(x.child(p, "name")),
                media_type=x.text(x.child(p, "media-type")),
                size=int(x.text(x.child(p, "size"))),
            )
            for p in x.children(root, "part")
        ),
    )
    check_sealed(sealed)
    return sealed
