"""What the SMTP bridge reads from a message it accepts. Pure.

The message itself is never changed: it becomes the document, byte for byte. Only
two facts are read from its header section, with the standard library's lenient
parser (a malformed header never refuses a message, it is just not used):

- ``Subject`` (RFC 2047 words decoded), which travels in the sealed header, cleaned
  of the characters the envelope format never carries and cut to its limit;
- ``X-Valise-Expires: <seconds>``, an optional shorter lifetime for the message
  (1 s to the default 30 days). When it runs out undelivered, the message fails
  and its sender gets a DSN. A value that is not such a number refuses the message.

Bare line endings: RFC 5321 section 2.3.8 allows CR and LF in DATA only as CRLF.
Accepting a lone one is what makes "SMTP smuggling" possible (``\\n.\\r\\n`` read as
the end of data by one server and not by the next), so a message holding one is
refused, whatever its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from email.parser import BytesHeaderParser
from email.policy import default

from gateway.bridges.mail.dsn import header_section

MAX_SUBJECT_CHARS = 998  # envelope.limits.MAX_SUBJECT_CHARS
MAX_EXPIRES = timedelta(days=30)  # envelope.seal.DEFAULT_TTL
EXPIRES_HEADER = "X-Valise-Expires"
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NOT_IN_ENVELOPE = re.compile("[\x00-\x1f\x7f\ufffe\uffff\ud800-\udfff]+")
_SECONDS = re.compile(r"\s*(\d{1,10})\s*")


class MessageError(ValueError):
    """The message cannot be accepted as it is (the reason is for the SMTP reply)."""


@dataclass(frozen=True)
class MessageFacts:
    subject: str | None
    expires_in: timedelta | None  # None: the default lifetime


def has_bare_line_ending(data: bytes) -> bool:
    """True if ``data`` holds a CR not followed by LF or an LF not preceded by CR."""
    return _BARE.search(data) is not None


def clean_subject(value: str) -> str | None:
    text = _NOT_IN_ENVELOPE.sub(" ", value).strip()
    return text[:MAX_SUBJECT_CHARS] or None


def message_facts(message: bytes) -> MessageFacts:
    """The subject and requested lifetime of ``message``. Raises :class:`MessageError`."""
    try:
        parsed = BytesHeaderParser(policy=default).parsebytes(header_section(message))
        raw_subject, raw_expires = parsed.get("Subject"), parsed.get(EXPIRES_HEADER)
        subject = clean_subject(str(raw_subject)) if raw_subject is not None else None
        expires_text = str(raw_expires) if raw_expires is not None else None
    except Exception:  # the stdlib parser's failures are not all typed; never fatal here
        return MessageFacts(subject=None, expires_in=None)
    expires_in = None
    if expires_text is not None:
        m = _SECONDS.fullmatch(expires_text)
        seconds = int(m[1]) if m else 0
        if not 1 <= seconds <= MAX_EXPIRES.total_seconds():
            raise MessageError(
                f"{EXPIRES_HEADER} must be a number of seconds from 1 to "
                f"{int(MAX_EXPIRES.total_seconds())}"
            )
        expires_in = timedelta(seconds=seconds)
    return MessageFacts(subject=subject, expires_in=expires_in)
