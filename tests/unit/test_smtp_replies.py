"""Enhanced status codes on every SMTP reply that should carry one."""

from __future__ import annotations

import pytest

from gateway.bridges.smtp.replies import enhance, queued


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("221 Bye", "221 2.0.0 Bye"),
        ("552 Error: Too much mail data", "552 5.3.4 Error: Too much mail data"),
        (
            "552 Error: message size exceeds fixed maximum message size",
            "552 5.3.4 Error: message size exceeds fixed maximum message size",
        ),
        (
            "530 Must issue a STARTTLS command first",
            "530 5.7.0 Must issue a STARTTLS command first",
        ),
        ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
        ("501 Syntax: HELO hostname", "501 5.5.4 Syntax: HELO hostname"),
        ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
        ("454 TLS not available", "454 4.7.0 TLS not available"),
        ("599 Odd", "599 5.0.0 Odd"),
        ("250", "250 2.0.0"),
        # Already enhanced, or never enhanced (RFC 2034 section 3):
        ("538 5.7.11 Encryption required", "538 5.7.11 Encryption required"),
        ("250 2.1.5 Recipient ok", "250 2.1.5 Recipient ok"),
        ("220 m-paris.valise.local Valise ESMTP", "220 m-paris.valise.local Valise ESMTP"),
        ("220 Ready to start TLS", "220 Ready to start TLS"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("334 VXNlcm5hbWU6", "334 VXNlcm5hbWU6"),
    ],
)
def test_enhance(reply: str, expected: str) -> None:
    assert enhance(reply) == expected


def test_ehlo_lines_are_left_alone() -> None:
    assert enhance("250-SIZE 1000", in_ehlo=True) == "250-SIZE 1000"
    assert enhance("250 HELP", in_ehlo=True) == "250 HELP"
    assert enhance("501 Syntax: EHLO hostname", in_ehlo=True) == "501 5.5.4 Syntax: EHLO hostname"


def test_queued_names_every_message_id() -> None:
    assert queued(["a", "b"]) == "250 2.0.0 Ok: queued as a b"
