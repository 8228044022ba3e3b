"""The fields of a remote site's sealed header that reach mail at the destination.

A remote site chooses ``<mailbox>``, ``<originator>``, ``<subject>`` and the part names
of what it seals. At the destination they become ``RCPT TO`` and ``MAIL FROM`` at the
smarthost, a Maildir folder, and the headers of the mail: none of them may steer the
mail elsewhere or add a header.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envelope.model import SealedHeader
from gateway.bridges.mail.address import (
    FieldCheck,
    bounce_recipient,
    delivery_mailbox,
    origin_sender,
    parse_recipient,
    site_address,
)
from gateway.bridges.mail.delivery import compose
from gateway.bridges.mail.headers import clean_text, safe_filename
from gateway.bridges.smtp.message import has_bare_line_ending
from gateway.relay.envelope_io import safe_name

DOMAIN = "valise.local"
STRICT_MAILBOX = re.compile(r"[a-z0-9_+\-]+(?:\.[a-z0-9_+\-]+)*")
MID = "01a230d0-11bd-72b2-b27e-d26f981d5fd7"
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

HOSTILE_MAILBOXES = [
    "minister.private@external.example,",
    "a@b",
    "x\r\nRCPT TO:<minister.private@external.example>",
    "x\nDATA",
    "../../etc",
    "..",
    ".hidden",
    "a..b",
    "a.",
    "minister%external.example",  # Postfix's percent hack: user%domain -> user@domain
    "ext!minister",  # a UUCP bang path
    '"minister"',
    "<minister@external.example>",
    "registry,minister@external.example",
    "registry minister",
    "r\u0435gistry",  # a Cyrillic "е"
    "registry\u200b",  # a zero-width space
    "ｒｅｇｉｓｔｒｙ",  # full-width letters
    "\u212aelvin",  # the Kelvin sign lower-cases to an ASCII "k"
    "registry\x00",
    "a" * 65,
    "",
]


@pytest.mark.parametrize("mailbox", HOSTILE_MAILBOXES)
def test_a_hostile_mailbox_is_replaced_by_the_default_with_a_reason(mailbox: str) -> None:
    checked = delivery_mailbox(mailbox)
    assert checked.value is None
    assert checked.refused is not None and checked.refused.startswith("mailbox refused: ")


@pytest.mark.parametrize(
    ("mailbox", "kept"),
    [("registry", "registry"), ("Consular.Visa+2026", "consular.visa+2026"), ("a" * 64, "a" * 64)],
)
def test_a_plain_mailbox_is_kept_in_lower_case(mailbox: str, kept: str) -> None:
    assert delivery_mailbox(mailbox) == FieldCheck(kept)


def test_no_mailbox_is_the_default_without_a_reason() -> None:
    assert delivery_mailbox(None) == FieldCheck(None)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.from_regex(r"[A-Za-z0-9._%+!@,<>\"\-/\\ ]{0,70}", fullmatch=True),
    )
)
def test_a_delivered_mailbox_is_always_one_local_dot_atom(mailbox: str) -> None:
    checked = delivery_mailbox(mailbox)
    if checked.value is None:
        assert checked.refused is not None
        return
    assert checked.refused is None
    assert STRICT_MAILBOX.fullmatch(checked.value) and len(checked.value) <= 64
    # As RCPT TO it names this site and that mailbox, and nothing else.
    rcpt = parse_recipient(site_address("HQ", checked.value, DOMAIN), DOMAIN)
    assert (rcpt.site, rcpt.mailbox) == ("HQ", checked.value)


@pytest.mark.parametrize(
    ("originator", "sender"),
    [
        ("alice@m-paris.valise.local", "alice@m-paris.valise.local"),
        ("Alice@M-PARIS.Valise.Local", "alice@m-paris.valise.local"),
        (None, None),
    ],
)
def test_the_origin_speaks_for_its_own_mailboxes(originator: str | None, sender: str) -> None:
    assert origin_sender(originator, "M-PARIS", DOMAIN) == FieldCheck(sender)


@pytest.mark.parametrize(
    "originator",
    [
        "ambassador@hq.valise.local",  # another site's mailbox
        "minister.private@external.example",  # the smarthost's bounces would go outside
        "a,b@m-paris.valise.local",  # two addresses in From:
        '"x@evil.example>,<b"@m-paris.valise.local',
        "Organ Name <alice@m-paris.valise.local>",  # an edXML organ: not an address
        "alice@m-paris.valise.local\r\nBcc: x@external.example",
        "alice@m-paris.valise.local>\r\nRCPT TO:<x@external.example",
        "=?utf-8?q?Ambassador?= <alice@m-paris.valise.local>",
        "\u0430lice@m-paris.valise.local",
        "",
    ],
)
def test_any_other_originator_is_refused_with_a_reason(originator: str) -> None:
    checked = origin_sender(originator, "M-PARIS", DOMAIN)
    assert checked.value is None
    assert checked.refused is not None and checked.refused.startswith("originator refused: ")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_an_accepted_originator_is_a_plain_address_of_the_origin(originator: str) -> None:
    checked = origin_sender(originator, "M-PARIS", DOMAIN)
    if checked.value is not None:
        local, _, host = checked.value.partition("@")
        assert STRICT_MAILBOX.fullmatch(local) and host == "m-paris.valise.local"


def test_a_dsn_goes_to_a_local_sender() -> None:
    got = bounce_recipient("Alice@M-Paris.valise.local", None, "M-PARIS", DOMAIN)
    assert got == FieldCheck("alice@m-paris.valise.local")
    got = bounce_recipient("alice@m-paris.valise.local", "dms", "M-PARIS", DOMAIN)
    assert got == FieldCheck("alice@m-paris.valise.local")


@pytest.mark.parametrize(
    "sender",
    [
        "victim@external.example",
        "alice@m-hanoi.valise.local",  # another site: it would go out through Valise
        "alice%external.example@m-paris.valise.local",
        '"a b"@m-paris.valise.local',
    ],
)
def test_a_dsn_for_any_other_sender_goes_to_the_integrator_or_nowhere(sender: str) -> None:
    authenticated = bounce_recipient(sender, "dms", "M-PARIS", DOMAIN)
    assert authenticated.value == "dms@m-paris.valise.local"
    assert authenticated.refused is not None
    anonymous = bounce_recipient(sender, None, "M-PARIS", DOMAIN)
    assert anonymous.value is None
    assert anonymous.refused is not None and "not authenticated" in anonymous.refused
    odd = bounce_recipient(sender, "a..b", "M-PARIS", DOMAIN)  # no longer a valid name
    assert odd.value is None and odd.refused is not None


def test_the_null_sender_is_never_bounced_to() -> None:
    assert bounce_recipient(None, "dms", "M-PARIS", DOMAIN) == FieldCheck(None, "null sender")


# -- the headers of a wrapped document ---------------------------------------------------

_HEADER_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200
).filter(lambda s: not re.search("[\x00-\x1f\x7f]", s))  # what the sealed header may hold


def _wrap(subject: str | None, name: str) -> bytes:
    return compose(
        [(name, "text/plain", b"hello\r\n")],
        SealedHeader(parts=(), subject=subject),
        message_id=MID,
        origin="M-PARIS",
        created=WHEN,
        sender="alice@m-paris.valise.local",
        recipient="registry@hq.valise.local",
        domain="valise.local",
    )


EXPECTED_HEADERS = [
    "X-Valise-Origin",
    "X-Valise-Message-Id",
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
]


@settings(max_examples=400, deadline=None)
@given(_HEADER_TEXT, _HEADER_TEXT)
def test_a_subject_or_file_name_never_adds_a_header(subject: str, name: str) -> None:
    data = _wrap(subject or None, name or "part")
    assert not has_bare_line_ending(data)
    msg = message_from_bytes(data, policy=default)
    assert list(msg.keys()) == EXPECTED_HEADERS
    (attachment,) = list(msg.iter_attachments())
    assert sorted(k.lower() for k in attachment) == [
        "content-disposition",
        "content-transfer-encoding",
        "content-type",
        "mime-version",
    ]
    assert attachment.get_filename() == safe_filename(name or "part")
    shown = str(msg["Subject"]).strip()
    assert shown == clean_text(subject or "Valise document from M-PARIS").strip()


@pytest.mark.parametrize(
    "subject",
    [
        "=?utf-8?q?x=0D=0ABcc:_minister.private@external.example?=",
        "x\u2028Bcc: minister.private@external.example",
        "x\x85Bcc: minister.private@external.example",
        "x\u2029\u2029body",
    ],
)
def test_an_encoded_word_or_unicode_line_break_stays_inside_the_subject(subject: str) -> None:
    msg = message_from_bytes(_wrap(subject, "a.txt"), policy=default)
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert "Bcc" not in msg


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?a=0D=0AX-Evil:_1?=",
        'a"; filename="evil.exe',
        "a\u2028b.txt",
        "invoice\u202efdp.exe",
        'x\\";',
    ],
)
def test_a_hostile_file_name_stays_inside_its_parameter(name: str) -> None:
    msg = message_from_bytes(_wrap("s", name), policy=default)
    (attachment,) = list(msg.iter_attachments())
    assert "X-Evil" not in attachment and "X-Evil" not in msg
    filename = attachment.get_filename()
    assert filename == safe_filename(name)
    assert not re.search('[\r\n"?\u2028\u202e]', filename)


def test_a_long_or_foreign_subject_is_folded_into_encoded_words() -> None:
    subject = "Note verbale " + "café " * 300
    data = _wrap(subject[:998], "a.txt")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert str(message_from_bytes(data, policy=default)["Subject"]) == subject[:998]


@pytest.mark.parametrize(
    "smuggled",
    [
        b"Subject: x\r\n\r\nhi\r\n.\rMAIL FROM:<a@b>\r\nRCPT TO:<minister@external.example>\r\n",
        b"Subject: x\r\n\r\nhi\n.\nRCPT TO:<minister@external.example>\r\n",
        b"Subject: x\r\n\r\nhi\x00\r\n",
    ],
)
def test_a_received_mail_message_that_could_smuggle_smtp_is_wrapped(smuggled: bytes) -> None:
    data = compose(
        [("message.eml", "message/rfc822", smuggled)],
        SealedHeader(parts=()),
        message_id=MID,
        origin="M-PARIS",
        created=WHEN,
        sender="valise@m-paris.valise.local",
        recipient="registry@hq.valise.local",
        domain="valise.local",
    )
    assert data != smuggled and not has_bare_line_ending(data) and b"\x00" not in data
    (attachment,) = list(message_from_bytes(data, policy=default).iter_attachments())
    assert attachment.get_content_type() == "application/octet-stream"
    assert attachment.get_payload(decode=True) == smuggled


@pytest.mark.parametrize("mark", ["\u061c", "\u200e", "\u200f"])
def test_a_bidi_mark_cannot_steer_a_subject_or_file_name(mark: str) -> None:
    # ALM, LRM, RLM: "invoice<RLM>fdp.exe" must not display as another name.
    assert clean_text(f"invoice{mark}fdp.exe") == "invoice\ufffdfdp.exe"
    assert mark not in safe_filename(f"invoice{mark}fdp.exe")


def test_mail_fields_and_inbox_file_names_lose_the_same_characters() -> None:
    # One definition (gateway/relay/envelope_io.py), so the two cannot drift apart again.
    path_chars = set('/\\:*?"<>|')
    for code in [*range(0x3000), *range(0xD800, 0xE000), *range(0xFE00, 0x10000)]:
        char = chr(code)
        if char in path_chars or char == ".":
            continue
        in_mail = clean_text(f"a{char}b") != f"a{char}b"
        in_inbox = safe_name(f"a{char}b") != f"a{char}b"
        assert in_mail == in_inbox, hex(code)
