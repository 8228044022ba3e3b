"""Delivery receipts: the destination's signed statement that it opened an envelope.

A receipt document names the message, its envelope digest (SPEC 4.3), the
destination site and the time. It travels back to the origin as the one part of
an ordinary envelope (class ``receipt``, ``in-reply-to`` the message), so the
destination's origin signature over that envelope is what makes it
non-repudiable, and the relay carries it like any other envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from envelope import xmlsafe as x
from envelope.errors import SchemaError
from envelope.values import check_message_id, check_site_id, format_time, parse_time

RECEIPT_CLASS = "receipt"
RECEIPT_MEDIA_TYPE = "application/vnd.valise.receipt+xml"
RECEIPT_NAME = "receipt.xml"
MAX_RECEIPT_BYTES = 4096


@dataclass(frozen=True)
class Receipt:
    message_id: str
    envelope_digest: bytes
    site: str
    at: datetime


def write_receipt(r: Receipt) -> bytes:
    check_message_id(r.message_id)
    check_site_id(r.site)
    if len(r.envelope_digest) != 32:
        raise SchemaError("an envelope digest is 32 bytes")
    return (
        x.start("receipt", [("version", "1")], root=True)
        + f"<message>{r.message_id}</message>"
        + f"<envelope-sha256>{r.envelope_digest.hex()}</envelope-sha256>"
        + f"<site>{r.site}</site><at>{format_time(r.at)}</at></receipt>"
    ).encode()


def parse_receipt(data: bytes) -> Receipt:
    """Raises an :class:`EnvelopeError` subclass."""
    root = x.parse(data, root="receipt", max_bytes=MAX_RECEIPT_BYTES)
    message, digest, site, at = (c.text or "" for c in root)
    return Receipt(message, bytes.fromhex(digest), site, parse_time(at, "receipt time"))
