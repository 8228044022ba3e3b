"""The mail a received document becomes at a Maildir or smarthost."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from typing import Any

from envelope.model import SealedHeader
from gateway.bridges.mail.delivery import compose
from gateway.bridges.smtp.message import has_bare_line_ending

SEALED = SealedHeader(parts=(), subject="Note verbale café", originator="dms")
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _compose(parts: list[tuple[str, str, bytes]]) -> bytes:
    return compose(
        parts,
        SEALED,
        message_id="01a230d0-11bd-72b2-b27e-d26f981d5fd7",
        origin="M-PARIS",
        created=WHEN,
        sender="valise@m-paris.valise.local",
        recipient="registry@hq.valise.local",
        domain="valise.local",
    )


def test_a_mail_message_from_its_origin_is_delivered_as_it_is_under_our_fields() -> None:
    message = b"From: alice@m-paris.valise.local\r\nSubject: x\r\n\r\nbody\r\n"
    assert _compose([("message.eml", "message/rfc822", message)]) == (
        b"X-Valise-Origin: M-PARIS\r\n"
        b"X-Valise-Message-Id: 01a230d0-11bd-72b2-b27e-d26f981d5fd7\r\n" + message
    )


def test_other_documents_are_wrapped_deterministically() -> None:
    parts = [
        ("note.pdf", "application/pdf", b"%PDF-1.7"),
        ("list.txt", "text/plain; charset=utf-8", "caf\u00e9\n".encode()),
        ("fwd.eml", "message/rfc822", b"Subject: y\r\n\r\nz\r\n"),
        ("odd", "not a type", b"\x00\x01"),
    ]
    data = _compose(parts)
    assert data == _compose(parts)
    assert not has_bare_line_ending(data)
    msg = message_from_bytes(data, policy=default)
    assert str(msg["Subject"]) == "Note verbale café"
    assert msg["X-Valise-Message-Id"] == "01a230d0-11bd-72b2-b27e-d26f981d5fd7"
    attachments: list[Any] = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["note.pdf", "list.txt", "fwd.eml", "odd"]
    assert [a.get_content_type() for a in attachments] == [
        "application/pdf",
        "text/plain",
        "application/octet-stream",
        "application/octet-stream",
    ]
    assert [a.get_payload(decode=True) for a in attachments] == [p[2] for p in parts]
