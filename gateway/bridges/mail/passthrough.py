"""Whether a received mail message may reach the local mail system as it is. Pure.

A document that came in through a remote site's SMTP bridge is one ``message/rfc822``
part: a whole mail message whose header section the remote site chose, line for line.
Handed on as it is, it would speak at this site's mail server with any voice: ``From:
minister@hq...``, ``Reply-To:`` or ``Disposition-Notification-To:`` an outside address
(the reply or read receipt leaves the ministry), a forged ``X-Valise-Origin``, a forged
``Authentication-Results: dkim=pass``; and one line over 998 bytes makes a strict
smarthost refuse it (500), so the document would never be delivered.

Rules (:func:`refusal`); a message that breaks one is wrapped as an attachment by
gateway/bridges/mail/delivery.py, never refused: the document is still delivered.
- No NUL and no bare CR or LF (SMTP smuggling), no line over MAX_LINE_BYTES.
- The header section is strictly formed: each line is a field name (printable ASCII
  but ``:``) and ``:``, or a continuation; an mbox ``From `` line or a name with a
  space before the colon (obsolete syntax that parsers read differently) is refused.
- Originator fields (ORIGINATOR_FIELDS: From, Sender, Reply-To, Resent-From..., and
  the fields a mail system sends a reply, a bounce or a read receipt to) hold only
  addresses of the signing origin, ``mailbox@<origin>.<domain>``. Recipient fields
  (RECIPIENT_FIELDS: To, Cc, Bcc, Resent-To/Cc/Bcc) hold only Valise addresses
  (``mailbox@<site>.<domain>``, any site) or empty groups (``undisclosed-recipients:;``):
  a reply to all goes nowhere outside Valise. From must appear exactly once,
  the other single fields (RFC 5322 3.6) at most once.
- The addresses are read by the small grammar here, not by ``email.utils``, whose
  readings of comments, quoted ``@`` and stray brackets differ from mail clients'
  (CVE-2023-27043): ``[display name] <addr>`` or ``addr``, comma separated, a display
  name of atoms, dots or plain quoted strings; no comments, no routes, ASCII only.
- Fields that only a receiving system may write (FORBIDDEN_FIELDS: Return-Path,
  Authentication-Results, ARC-Authentication-Results, Received-SPF) and every
  ``X-Valise-*`` field but ``X-Valise-Expires`` (the bridge's own submission field,
  which claims nothing) are refused: the destination writes its own X-Valise-Origin
  and X-Valise-Message-Id, from the verified envelope, on top (:func:`stamp`).
"""

from __future__ import annotations

import re

from gateway.bridges.mail.address import AddressError, parse_recipient

MAX_LINE_BYTES = 998  # RFC 5322 2.1.1, without the CRLF
MAX_ADDRESS_FIELD_CHARS = 8192  # an address field, unfolded (bounds the parsing work)
ORIGINATOR_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "resent-from",
        "resent-sender",
        "resent-reply-to",
        "mail-reply-to",
        "mail-followup-to",
        "disposition-notification-to",
        "return-receipt-to",
        "errors-to",
    }
)
RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})
FORBIDDEN_FIELDS = frozenset(
    {"return-path", "authentication-results", "arc-authentication-results", "received-spf"}
)
ALLOWED_VALISE_FIELDS = frozenset({"x-valise-expires"})
# RFC 5322 3.6: at most once (From: exactly once).
SINGLE_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "mail-reply-to",
        "mail-followup-to",
        "disposition-notification-to",
        "return-receipt-to",
        "errors-to",
    }
)

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_QUOTED = r'"[^"\\\r\n]*"'
_PHRASE = rf"(?:{_ATOM}|{_QUOTED})(?:[ \t]+(?:{_ATOM}|{_QUOTED}))*"
_ADDR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+"
_MAILBOX = re.compile(
    rf"[ \t]*(?:(?:{_PHRASE})?[ \t]*<(?P<angle>{_ADDR})>|(?P<bare>{_ADDR}))[ \t]*(?:,|\Z)"
)
_EMPTY_GROUP = re.compile(rf"[ \t]*{_PHRASE}[ \t]*:[ \t]*;[ \t]*(?:,|\Z)")


def longest_line(message: bytes) -> int:
    """The length of the longest CRLF-ended line of ``message`` (the last one may lack
    its CRLF), without the CRLF. Linear in the size of the message: a regular expression
    searching for a long line restarts at every byte and costs size x line length
    (seconds per megabyte of 998-byte lines, on the event loop)."""
    longest, start = 0, 0
    while True:
        end = message.find(b"\r\n", start)
        if end < 0:
            return max(longest, len(message) - start)
        longest = max(longest, end - start)
        start = end + 2


def refusal(message: bytes, origin: str, domain: str) -> str | None:
    """Why ``message`` (a received ``message/rfc822`` part) must be wrapped, or None
    if it may be handed on as it is (after :func:`stamp`)."""
    if b"\x00" in message or _BARE.search(message) is not None:
        return "a NUL or a bare CR or LF"
    if longest_line(message) > MAX_LINE_BYTES:
        return f"a line over {MAX_LINE_BYTES} bytes"
    fields = _header_fields(message)
    if isinstance(fields, str):
        return fields
    seen: dict[str, int] = {}
    for name, value in fields:
        seen[name] = seen.get(name, 0) + 1
        if name in FORBIDDEN_FIELDS:
            return f"{name}: only a receiving system writes it"
        if name.startswith("x-valise-") and name not in ALLOWED_VALISE_FIELDS:
            return f"{name}: only the destination writes X-Valise fields"
        if name in ORIGINATOR_FIELDS:
            why = _addresses(value, domain, origin, groups=False)
            if why is not None:
                return f"{name}: {why} (only addresses of the origin {origin})"
        elif name in RECIPIENT_FIELDS:
            why = _addresses(value, domain, None, groups=True)
            if why is not None:
                return f"{name}: {why} (only Valise addresses)"
    if seen.get("from") != 1:
        return "From must appear exactly once"
    twice = sorted(n for n in SINGLE_FIELDS if seen.get(n, 0) > 1)
    if twice:
        return f"{twice[0]} appears more than once"
    return None


def stamp(message: bytes, *, message_id: str, origin: str) -> bytes:
    """``message`` with this destination's X-Valise fields on top (from the verified
    envelope: ``origin`` is a site id, ``message_id`` a UUID)."""
    return stamp_lines(message_id=message_id, origin=origin).encode("ascii") + message


def stamp_lines(*, message_id: str, origin: str) -> str:
    return f"X-Valise-Origin: {origin}\r\nX-Valise-Message-Id: {message_id}\r\n"


def _header_fields(message: bytes) -> list[tuple[str, str]] | str:
    """The (lower-case name, unfolded value) of each header field, or why the header
    section is malformed. Values are decoded as Latin-1 (a byte is a character)."""
    end = message.find(b"\r\n\r\n")
    head = message[: end + 2] if end >= 0 else message
    fields: list[tuple[str, list[bytes]]] = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return "the header section starts with a continuation line"
            fields[-1][1].append(line)
            continue
        m = _FIELD.match(line)
        if m is None:
            return "a malformed header line"
        fields.append((m[1].decode("ascii").lower(), [line[m.end() :]]))
    return [(name, b"".join(value).decode("latin-1")) for name, value in fields]


def _addresses(value: str, domain: str, site: str | None, *, groups: bool) -> str | None:
    """Why the address list ``value`` is not one of addresses at ``site`` (None: at any
    site) under ``domain``, or None."""
    if len(value) > MAX_ADDRESS_FIELD_CHARS:
        return f"over {MAX_ADDRESS_FIELD_CHARS} characters"
    if not value.isascii():
        return "not plain ASCII"
    if not value.strip():
        return "empty"
    pos, end = 0, len(value)
    while pos < end:
        m = _MAILBOX.match(value, pos)
        if m is None:
            g = _EMPTY_GROUP.match(value, pos) if groups else None
            if g is None or g.end() == pos:
                return "not a plain address list"
            pos = g.end()
            continue
        if m.end() == pos:
            return "not a plain address list"
        pos = m.end()
        address = m["angle"] or m["bare"]
        try:
            rcpt = parse_recipient(address, domain)
        except AddressError as exc:
            return f"{address}: {exc}"
        if site is not None and rcpt.site != site:
            return f"{address} is not an address of {site}"
    return None
