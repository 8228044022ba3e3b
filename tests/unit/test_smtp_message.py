"""What the SMTP bridge reads from a message: bare line endings, subject, lifetime."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridges.smtp.message import MessageError, has_bare_line_ending, message_facts


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\n\r\nsmuggled\n.\r\nMAIL FROM:<evil>\r\n",
        b"Subject: x\r\n\r\nsmuggled\r.\r\nMAIL FROM:<evil>\r\n",
        b"Subject: x\r\n\r\nsmuggled\r\n.\rMAIL FROM:<evil>\r\n",
        b"Subject: x\r\n\r\nbare\nLF\r\n",
        b"Subject: x\r\n\r\nends with a CR\r",
        b"Subject: x\n\r\n",
        b"\n",
        b"\r",
    ],
)
def test_bare_line_endings_are_found(data: bytes) -> None:
    assert has_bare_line_ending(data)


@pytest.mark.parametrize("data", [b"", b"Subject: x\r\n\r\nok\r\n", b"\r\n\r\n", b"a\r\nb"])
def test_crlf_only_is_fine(data: bytes) -> None:
    assert not has_bare_line_ending(data)


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)))
def test_lines_joined_by_crlf_are_never_bare(lines: list[bytes]) -> None:
    assert not has_bare_line_ending(b"\r\n".join(lines))


def test_subject_is_decoded_and_cleaned() -> None:
    facts = message_facts(b"Subject: =?utf-8?q?Note_verbale_caf=C3=A9?=\r\n\r\nbody\r\n")
    assert facts.subject == "Note verbale café" and facts.expires_in is None
    folded = message_facts(b"Subject: one\r\n two\r\n\r\n")
    assert folded.subject == "one two"
    assert message_facts(b"From: a@b\r\n\r\n").subject is None
    assert message_facts(b"Subject: \x01\x02\r\n\r\n").subject is None
    assert message_facts(b"Subject: \xff\xfe latin\r\n\r\n").subject is not None
    long = message_facts(b"Subject: " + b"x" * 2000 + b"\r\n\r\n").subject
    assert long is not None and len(long) == 998


def test_expiry_header() -> None:
    facts = message_facts(b"X-Valise-Expires: 3\r\n\r\n")
    assert facts.expires_in == timedelta(seconds=3)
    assert message_facts(b"X-Valise-Expires: 2592000\r\n\r\n").expires_in == timedelta(days=30)
    for bad in (b"0", b"-1", b"2592001", b"soon", b""):
        with pytest.raises(MessageError):
            message_facts(b"X-Valise-Expires: " + bad + b"\r\n\r\n")


@given(st.binary(max_size=500))
def test_any_bytes_give_facts_or_a_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        message_facts(data)
