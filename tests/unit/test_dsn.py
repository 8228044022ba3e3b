"""The DSN builder: RFC 3464 multipart/report, deterministic, always parseable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import default

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridges.mail.dsn import (
    EXPIRED_STATUS,
    MAX_HEADER_BYTES,
    REFUSED_STATUS,
    Bounce,
    build_dsn,
    header_section,
    status_for,
)
from gateway.bridges.smtp.message import has_bare_line_ending

ORIGINAL = (
    b"From: alice@m-paris.valise.local\r\n"
    b"To: registry@m-hanoi.valise.local\r\n"
    b"Subject: Note verbale 12\r\n"
    b"Message-ID: <nv12@m-paris>\r\n"
    b"\r\n"
    b"The body is not returned.\r\n"
)
BOUNCE = Bounce(
    message_id="01a230d0-11bd-72b2-b27e-d26f981d5fd7",
    sender="alice@m-paris.valise.local",
    recipients=("registry@m-hanoi.valise.local", "Registry@M-HANOI.valise.local"),
    reason="expired",
    reporting_mta="m-paris.valise.local",
    arrival=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    failed_at=datetime(2026, 12, 31, 9, 0, tzinfo=UTC),
    original_headers=header_section(ORIGINAL),
)


def _parts(data: bytes) -> tuple[Message, list[Message]]:
    msg = message_from_bytes(data, policy=default)
    return msg, list(msg.iter_parts())


def test_a_dsn_is_a_multipart_report_with_three_parts() -> None:
    data = build_dsn(BOUNCE)
    assert not has_bare_line_ending(data)
    msg, parts = _parts(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert str(msg["To"]) == "alice@m-paris.valise.local"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert "registry@m-hanoi.valise.local" in parts[0].get_content()  # type: ignore[attr-defined]
    assert b"Subject: Note verbale 12" in parts[2].get_payload(decode=True)
    assert b"The body is not returned" not in data


def test_the_delivery_status_has_one_group_per_recipient() -> None:
    text = build_dsn(BOUNCE).decode("ascii")
    status = text.split("Content-Type: message/delivery-status")[1].split("--=_valise")[0]
    assert "Reporting-MTA: dns; m-paris.valise.local" in status
    assert status.count("Final-Recipient: rfc822; ") == 2
    assert status.count("Action: failed") == 2
    assert status.count(f"Status: {EXPIRED_STATUS}") == 2
    assert "Arrival-Date: Tue, 01 Dec 2026 09:00:00 +0000" in status
    # Per-message fields, then each recipient group after an empty line (RFC 3464 2.1).
    assert "\r\n\r\nFinal-Recipient: rfc822; registry@m-hanoi.valise.local\r\n" in status


def _groups(data: bytes) -> list[dict[str, str]]:
    """The per-recipient groups of the delivery-status part, field by field."""
    status = data.decode("ascii").split("Content-Type: message/delivery-status")[1]
    status = status.split("--=_valise")[0]
    groups = []
    for block in status.split("\r\n\r\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
        if "Final-Recipient" in fields:
            groups.append(fields)
    return groups


def test_a_dsn_has_one_block_per_failed_recipient_with_its_own_reason() -> None:
    # A circular to three sites: M-ROME delivered (not named), M-HANOI expired, HQ refused.
    bounce = replace(
        BOUNCE,
        recipients=("a@m-hanoi.valise.local", "b@hq.valise.local", "c@m-rome.valise.local"),
        failures=(
            ("a@m-hanoi.valise.local", "expired"),
            ("b@hq.valise.local", "refused by HQ: unknown mailbox"),
        ),
    )
    data = build_dsn(bounce)
    assert [
        (g["Final-Recipient"], g["Action"], g["Status"], g["Diagnostic-Code"])
        for g in _groups(data)
    ] == [
        ("rfc822; a@m-hanoi.valise.local", "failed", EXPIRED_STATUS, "X-Valise; expired"),
        (
            "rfc822; b@hq.valise.local",
            "failed",
            REFUSED_STATUS,
            "X-Valise; refused by HQ: unknown mailbox",
        ),
    ]
    text = _parts(data)[1][0].get_content()  # type: ignore[attr-defined]
    assert "<a@m-hanoi.valise.local>: expired" in text
    assert "<b@hq.valise.local>: refused by HQ: unknown mailbox" in text
    assert b"m-rome" not in data.split(b"Content-Type: text/rfc822-headers")[0]
    assert build_dsn(bounce) == data  # still deterministic
    # Without failures, every recipient with the one reason (as before).
    assert [g["Status"] for g in _groups(build_dsn(BOUNCE))] == [EXPIRED_STATUS] * 2


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=40), st.sampled_from(["expired", "refused by HQ: x", "?"])),
        min_size=1,
        max_size=5,
    )
)
def test_any_failures_give_one_block_each_in_order(failures: list[tuple[str, str]]) -> None:
    data = build_dsn(replace(BOUNCE, failures=failures))
    groups = _groups(data)
    assert [g["Status"] for g in groups] == [status_for(why) for _, why in failures]
    assert [g["Diagnostic-Code"] for g in groups] == [f"X-Valise; {why}" for _, why in failures]


def test_the_dsn_is_deterministic() -> None:
    assert build_dsn(BOUNCE) == build_dsn(BOUNCE)


def test_status_codes() -> None:
    assert status_for("expired") == EXPIRED_STATUS
    assert status_for("refused by HQ: unknown destination") == REFUSED_STATUS
    assert status_for("whatever").startswith("5.")


def test_header_section_stops_at_the_body_and_is_capped() -> None:
    assert header_section(ORIGINAL).endswith(b"<nv12@m-paris>\r\n")
    assert header_section(b"Subject: x") == b"Subject: x\r\n"
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(1000)) + b"\r\nbody"
    cut = header_section(many)
    assert len(cut) <= MAX_HEADER_BYTES and cut.endswith(b"\r\n")


@settings(max_examples=200, deadline=None)
@given(
    reason=st.text(max_size=600),
    sender=st.text(max_size=80),
    headers=st.binary(max_size=2000),
    recipients=st.lists(st.text(max_size=60), min_size=1, max_size=4),
)
def test_any_bounce_builds_a_parseable_7bit_report(
    reason: str, sender: str, headers: bytes, recipients: list[str]
) -> None:
    bounce = Bounce(
        message_id="01a230d0-11bd-72b2-b27e-d26f981d5fd7",
        sender=sender,
        recipients=recipients,
        reason=reason,
        reporting_mta="m-paris.valise.local",
        arrival=BOUNCE.arrival,
        failed_at=BOUNCE.failed_at,
        original_headers=headers,
    )
    data = build_dsn(bounce)
    head, _, _ = data.partition(b"Content-Type: text/rfc822-headers")
    head.decode("ascii")  # everything the bridge writes itself is ASCII
    msg, parts = _parts(data)
    assert msg.get_content_type() == "multipart/report"
    assert len(parts) >= 2
