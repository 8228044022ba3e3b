"""Delivery status notifications (RFC 3464 / RFC 6522) for the SMTP bridge. Pure.

When a message submitted over SMTP finally fails, the origin site sends its sender a
``multipart/report; report-type=delivery-status`` message with three parts: a
human-readable explanation, the ``message/delivery-status`` fields (one group per
failed recipient) and the original message's header section
(``text/rfc822-headers``, not the whole message: the body may be large and the
sender has it). It is sent with the null reverse-path ``MAIL FROM:<>`` and marked
``Auto-Submitted: auto-replied`` so that no one ever answers a bounce with a bounce.

The bytes are fully determined by the :class:`Bounce` (no clock, no randomness), so
a DSN retried after a crash is the same message.

Only the recipients that failed are named: a document with several destinations
whose other destinations delivered bounces for the failed ones alone, one RFC 3464
per-recipient block each with its own ``Status`` and ``Diagnostic-Code`` (from that
recipient's own reason: ``expired`` is 5.4.7, ``refused by ...`` 5.4.0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

MAX_REASON_CHARS = 500
MAX_HEADER_BYTES = 16 * 1024  # the original header section returned, at most
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
EXPIRED_STATUS = "5.4.7"  # RFC 3463: delivery time expired
REFUSED_STATUS = "5.4.0"  # RFC 3463: other network or routing status
OTHER_STATUS = "5.0.0"


@dataclass(frozen=True)
class Bounce:
    message_id: str  # the Valise message id
    sender: str  # to whom the DSN goes: a local address (smtp_address.bounce_recipient)
    recipients: Sequence[str]  # the RCPT TO addresses that failed
    reason: str  # why, in words: "expired", "refused by HQ: ..."
    reporting_mta: str  # this gateway's name: "m-paris.valise.local"
    arrival: datetime  # when the bridge accepted the message
    failed_at: datetime
    original_headers: bytes = b""  # the message's header section, as received
    # (recipient, reason) per failed recipient, each with its own reason; when given,
    # these are the recipients bounced (``recipients`` and ``reason`` are then unused).
    failures: Sequence[tuple[str, str]] = ()

    def failed(self) -> list[tuple[str, str]]:
        """(recipient, reason) of every recipient bounced."""
        if self.failures:
            return list(self.failures)
        return [(r, self.reason) for r in self.recipients]


def status_for(reason: str) -> str:
    """The RFC 3463 status of a failure reason from the relay."""
    if reason.startswith("expired"):
        return EXPIRED_STATUS
    if reason.startswith("refused"):
        return REFUSED_STATUS
    return OTHER_STATUS


def header_section(message: bytes) -> bytes:
    """The header section of ``message`` (up to the first empty line), capped, CRLF-ended."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    if len(head) > MAX_HEADER_BYTES:
        cut = head.rfind(b"\r\n", 0, MAX_HEADER_BYTES)
        head = head[: cut + 2] if cut >= 0 else b""
    return head if head.endswith(b"\r\n") or not head else head + b"\r\n"


def _text(value: str, limit: int = MAX_REASON_CHARS) -> str:
    return _NOT_PRINTABLE.sub("?", value)[:limit]


def build_dsn(bounce: Bounce) -> bytes:
    """The DSN message for ``bounce``, CRLF line endings, 7-bit unless the original
    headers are 8-bit."""
    b = bounce
    mta = _text(b.reporting_mta, 255)
    boundary = f"=_valise-dsn-{_text(b.message_id, 64)}"
    failed = [(_text(r, 254), _text(why) or "failed", status_for(why)) for r, why in b.failed()]
    headers = header_section(b.original_headers)
    eight_bit = any(c > 0x7E for c in headers)

    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>",
        f"To: <{_text(b.sender, 254)}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(b.failed_at)}",
        f"Message-ID: <dsn.{_text(b.message_id, 64)}@{mta}>",
        "Auto-Submitted: auto-replied",
        f"X-Valise-Message-Id: {_text(b.message_id, 64)}",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Description: Notification",
        "",
        f"This is the Valise gateway at {mta}.",
        "",
        "Your message could not be delivered to the following recipients:",
        "",
        *[f"  <{r}>: {reason}" for r, reason, _ in failed],
        "",
        f"Valise message id: {_text(b.message_id, 64)}",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        f"Reporting-MTA: dns; {mta}",
        f"X-Valise-Message-Id: {_text(b.message_id, 64)}",
        f"Arrival-Date: {format_datetime(b.arrival)}",
    ]
    for r, reason, status in failed:
        lines += [
            "",
            f"Final-Recipient: rfc822; {r}",
            "Action: failed",
            f"Status: {status}",
            f"Diagnostic-Code: X-Valise; {reason}",
            f"Last-Attempt-Date: {format_datetime(b.failed_at)}",
        ]
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        f"Content-Transfer-Encoding: {'8bit' if eight_bit else '7bit'}",
        "Content-Description: Undelivered message headers",
        "",
    ]
    head = "\r\n".join(lines).encode("ascii") + b"\r\n"
    return head + headers + f"\r\n--{boundary}--\r\n".encode("ascii")
