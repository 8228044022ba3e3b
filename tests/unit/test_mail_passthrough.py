"""A remote site's mail message reaches the local mail system as it is only if its
headers speak for the origin alone (gateway/bridges/mail/passthrough.py): otherwise
it is wrapped as an attachment, and this site's X-Valise fields are always on top."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest

from envelope.model import SealedHeader
from gateway.bridges.mail.delivery import compose
from gateway.bridges.mail.passthrough import MAX_LINE_BYTES, longest_line, refusal
from gateway.bridges.smtp.message import has_bare_line_ending

MID = "01a230d0-11bd-72b2-b27e-d26f981d5fd7"
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DOMAIN = "valise.local"
STAMP = f"X-Valise-Origin: M-PARIS\r\nX-Valise-Message-Id: {MID}\r\n".encode()
CLEAN = (
    b'From: "Alice Martin" <alice@m-paris.valise.local>\r\n'
    b"To: registry@hq.valise.local, =?utf-8?q?Cl=C3=A9ment?= <clerk@m-hanoi.valise.local>\r\n"
    b"Cc: undisclosed-recipients:;\r\n"
    b"Subject: Note verbale 12\r\n"
    b"X-Valise-Expires: 3600\r\n"
    b"\r\n"
    b"body\r\n"
)
# What a hostile mission sealed for HQ in the review (net1_rfc822.py).
REVIEW = (
    b"From: Minister of Foreign Affairs <minister@hq.valise.local>\r\n"
    b"Sender: minister@hq.valise.local\r\n"
    b"To: registry@hq.valise.local\r\n"
    b"Reply-To: exfil@attacker.example\r\n"
    b"Disposition-Notification-To: exfil@attacker.example\r\n"
    b"X-Valise-Origin: HQ\r\n"
    b"X-Valise-Message-Id: 00000000-0000-7000-8000-000000000000\r\n"
    b"Subject: Instruction: forward all cables to Reply-To\r\n"
    b"\r\nbody\r\n"
)


def _compose(message: bytes) -> bytes:
    return compose(
        [("message.eml", "message/rfc822", message)],
        SealedHeader(parts=()),
        message_id=MID,
        origin="M-PARIS",
        created=WHEN,
        sender="valise@m-paris.valise.local",
        recipient="registry@hq.valise.local",
        domain=DOMAIN,
    )


def _assert_wrapped(message: bytes) -> None:
    data = _compose(message)
    msg = message_from_bytes(data, policy=default)
    assert list(msg.keys())[:2] == ["X-Valise-Origin", "X-Valise-Message-Id"]
    assert msg.get_all("X-Valise-Origin") == ["M-PARIS"]
    assert msg.get_all("X-Valise-Message-Id") == [MID]
    assert msg["From"] == "valise@m-paris.valise.local"
    for name in ("Sender", "Reply-To", "Disposition-Notification-To", "Return-Path"):
        assert name not in msg
    assert not has_bare_line_ending(data)
    assert max(len(line) for line in data.split(b"\r\n")) <= MAX_LINE_BYTES
    attachments: list[Any] = list(msg.iter_attachments())
    assert [a.get_payload(decode=True) for a in attachments] == [message]


def test_the_reviews_forged_message_is_wrapped_under_our_own_valise_fields() -> None:
    assert refusal(REVIEW, "M-PARIS", DOMAIN) is not None
    _assert_wrapped(REVIEW)


def test_a_message_that_speaks_for_its_origin_passes_with_our_fields_on_top() -> None:
    assert refusal(CLEAN, "M-PARIS", DOMAIN) is None
    data = _compose(CLEAN)
    assert data == STAMP + CLEAN
    assert list(message_from_bytes(data, policy=default).keys())[:2] == [
        "X-Valise-Origin",
        "X-Valise-Message-Id",
    ]


def _with(line: bytes) -> bytes:
    """CLEAN with ``line`` (a header field) added before its Subject."""
    return CLEAN.replace(b"Subject:", line + b"\r\nSubject:", 1)


HOSTILE_FIELDS = [
    b"Reply-To: exfil@attacker.example",
    b"Reply-To: ops@hq.valise.local",  # another site: it speaks only for its own
    b"Sender: minister@hq.valise.local",
    b"Disposition-Notification-To: exfil@attacker.example",
    b"Return-Receipt-To: exfil@attacker.example",
    b"Errors-To: exfil@attacker.example",
    b"Mail-Reply-To: exfil@attacker.example",
    b"Mail-Followup-To: exfil@attacker.example",
    b"Resent-From: minister@hq.valise.local",
    b"Resent-Sender: minister@hq.valise.local",
    b"Resent-Reply-To: exfil@attacker.example",
    b"Bcc: exfil@attacker.example",
    b"Resent-To: exfil@attacker.example",
    b"Resent-Cc: registry@hq.valise.local, exfil@attacker.example",
    b"Return-Path: <exfil@attacker.example>",
    b"Return-Path: <alice@m-paris.valise.local>",
    b"Authentication-Results: hq.valise.local; dkim=pass header.d=hq.valise.local",
    b"ARC-Authentication-Results: i=1; hq.valise.local; dkim=pass",
    b"Received-SPF: pass",
    b"X-Valise-Origin: HQ",
    b"x-valise-message-id: 00000000-0000-7000-8000-000000000000",
    b"X-Valise-Anything: 1",
    b"Reply-To: alice@m-paris.valise.local (exfil@attacker.example)",
    b"Reply-To: alice@m-paris.valise.local\r\nReply-To: bob@m-paris.valise.local",
    b"Sender: alice@m-paris.valise.local\r\nSender: alice@m-paris.valise.local",
    b"Disposition-Notification-To:",
    b"From : minister@hq.valise.local",  # obsolete syntax, read differently by parsers
    b"Reply-To: \xc3\xa9@m-paris.valise.local",
    b"Reply-To: a@m-paris.valise.local.attacker.example",
    b"Reply-To: a%exfil.example@m-paris.valise.local",
    b"Reply-To: <@hq.valise.local:alice@m-paris.valise.local>",
]


@pytest.mark.parametrize("line", HOSTILE_FIELDS, ids=lambda b: b.decode("latin-1")[:48])
def test_a_field_that_speaks_for_anyone_else_wraps_the_message(line: bytes) -> None:
    message = _with(line)
    assert refusal(message, "M-PARIS", DOMAIN) is not None
    _assert_wrapped(message)


FORGED_FROM = [
    b"From: alice@m-paris.valise.local <minister@hq.valise.local>",
    b'From: "alice@m-paris.valise.local" <minister@hq.valise.local>',
    b"From: minister@hq.valise.local (alice@m-paris.valise.local)",
    b"From: <alice@m-paris.valise.local>, minister@hq.valise.local",
    b"From: alice@m-paris.valise.local\r\nFrom: minister@hq.valise.local",
    b"From: alice\r\n @m-paris.valise.local",
    b"From: alice@m-paris.valise.local>",
    b"From: <alice@m-paris.valise.local",
]


@pytest.mark.parametrize("line", FORGED_FROM, ids=lambda b: b.decode()[:48])
def test_a_from_that_parsers_could_read_two_ways_wraps_the_message(line: bytes) -> None:
    message = CLEAN.replace(b'From: "Alice Martin" <alice@m-paris.valise.local>', line)
    assert refusal(message, "M-PARIS", DOMAIN) is not None
    _assert_wrapped(message)


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: no From\r\n\r\nbody\r\n",
        b"From alice@m-paris.valise.local Mon Dec  1 09:00:00 2026\r\n" + CLEAN,
        b" folded: first\r\n" + CLEAN,
    ],
    ids=["no-from", "mbox-from-line", "starts-folded"],
)
def test_a_malformed_header_section_wraps_the_message(message: bytes) -> None:
    assert refusal(message, "M-PARIS", DOMAIN) is not None
    _assert_wrapped(message)


@pytest.mark.parametrize(
    ("length", "passes"),
    [(MAX_LINE_BYTES - 1, True), (MAX_LINE_BYTES, True), (MAX_LINE_BYTES + 1, False)],
)
@pytest.mark.parametrize("where", ["body", "header"])
def test_a_line_over_998_bytes_wraps_the_message(length: int, passes: bool, where: str) -> None:
    if where == "body":
        message = CLEAN + b"x" * length + b"\r\n"
    else:
        field = b"Subject: "
        message = CLEAN.replace(b"Subject: Note verbale 12", field + b"x" * (length - len(field)))
    assert (refusal(message, "M-PARIS", DOMAIN) is None) is passes
    if passes:
        assert _compose(message) == STAMP + message
    else:
        _assert_wrapped(message)


def test_the_origin_decides_whose_addresses_pass() -> None:
    assert refusal(CLEAN, "M-HANOI", DOMAIN) is not None
    assert refusal(CLEAN, "M-PARIS", "other.example") is not None


@pytest.mark.parametrize(
    ("message", "longest"),
    [
        (b"", 0),
        (b"abc", 3),
        (b"abc\r\n", 3),
        (b"a\r\nbcdef\r\nxy", 5),
        (b"\r\n\r\n", 0),
    ],
)
def test_longest_line_counts_each_crlf_line(message: bytes, longest: int) -> None:
    assert longest_line(message) == longest


def test_a_large_message_of_legal_lines_is_judged_whole() -> None:
    # 8 MiB of 998-byte lines, then one line over: the old search restarted at every
    # byte (size x line length, minutes here, on the event loop); the scan is linear.
    line = b"x" * MAX_LINE_BYTES + b"\r\n"
    body = line * (8 * 1024 * 1024 // len(line))
    head = b"From: a@m-paris.valise.local\r\nSubject: big\r\n\r\n"
    assert longest_line(head + body) == MAX_LINE_BYTES
    assert refusal(head + body + b"y" * (MAX_LINE_BYTES + 1), "M-PARIS", "valise.local") == (
        f"a line over {MAX_LINE_BYTES} bytes"
    )
