"""The SMTP bridge's address parser: which site and mailbox a RCPT names."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bridges.mail.address import (
    AddressError,
    AddressSyntaxError,
    ForeignDomainError,
    MailRecipient,
    SenderNotOwnedError,
    mailbox_of,
    own_sender,
    parse_recipient,
    parse_sender,
    site_address,
)

DOMAIN = "valise.local"


@pytest.mark.parametrize(
    ("address", "site", "mailbox"),
    [
        ("registry@m-hanoi.valise.local", "M-HANOI", "registry"),
        ("Registry@M-HANOI.Valise.Local", "M-HANOI", "registry"),
        ("consular.visa+2026@hq.valise.local", "HQ", "consular.visa+2026"),
        ("a_b+c-d@m-paris.valise.local", "M-PARIS", "a_b+c-d"),
    ],
)
def test_recipients_name_a_site_and_a_mailbox(address: str, site: str, mailbox: str) -> None:
    assert parse_recipient(address, DOMAIN) == MailRecipient(site, mailbox)


def test_the_domain_is_configurable_and_case_insensitive() -> None:
    assert parse_recipient("a@m-paris.Mail.Example.ORG", "mail.example.org").site == "M-PARIS"
    with pytest.raises(ForeignDomainError):
        parse_recipient("a@m-paris.valise.local", "mail.example.org")


@pytest.mark.parametrize(
    "address",
    [
        "registry@example.org",
        "registry@valise.local",  # no site label
        "registry@x.m-paris.valise.local",  # two labels: not a site id
        "registry@1abc.valise.local",  # site ids start with a letter
        "registry@a.valise.local",  # and have two characters at least
        "registry@m-parisévalise.local",
        "registry@m_paris.valise.local",
        "registry@m-paris.valise.localhost",
        "registry@[127.0.0.1]",
    ],
)
def test_other_domains_are_relaying(address: str) -> None:
    with pytest.raises(ForeignDomainError):
        parse_recipient(address, DOMAIN)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "registry",
        "@m-paris.valise.local",
        "registry@",
        '"john doe"@m-paris.valise.local',
        ".registry@m-paris.valise.local",
        "registry.@m-paris.valise.local",
        "reg..istry@m-paris.valise.local",
        "reg/istry@m-paris.valise.local",
        "../etc@m-paris.valise.local",
        "régistre@m-paris.valise.local",
        "minister%external.example@m-paris.valise.local",  # the percent-hack source route
        "a" * 65 + "@m-paris.valise.local",
        "a@" + "b" * 250 + ".valise.local",
    ],
)
def test_bad_mailboxes_are_syntax_errors(address: str) -> None:
    with pytest.raises(AddressSyntaxError):
        parse_recipient(address, DOMAIN)


def test_a_64_character_mailbox_is_the_longest() -> None:
    assert parse_recipient("a" * 64 + "@hq.valise.local", DOMAIN).mailbox == "a" * 64


def test_site_address_is_the_inverse() -> None:
    address = site_address("M-HANOI", "registry", DOMAIN)
    assert address == "registry@m-hanoi.valise.local"
    assert parse_recipient(address, DOMAIN) == MailRecipient("M-HANOI", "registry")


def test_senders() -> None:
    assert parse_sender("<>") is None
    assert parse_sender("Alice@M-Paris.valise.local") == "Alice@M-Paris.valise.local"
    for bad in (
        '"a b"@x.org',
        "alice",
        "alice@",
        "@x",
        "a@b@c",
        "al ice@x",
        "a\r\n@x",
        "a@x" + "y" * 254,
    ):
        with pytest.raises(AddressSyntaxError):
            parse_sender(bad)
    assert mailbox_of("Alice@m-paris.valise.local") == "alice"


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300), st.sampled_from([DOMAIN, "mail.example.org", "", "."]))
def test_the_parser_raises_only_its_typed_error(address: str, domain: str) -> None:
    try:
        r = parse_recipient(address, domain)
    except AddressError:
        return
    assert r.site.isascii() and r.site.isupper() and r.mailbox == r.mailbox.lower()
    assert "/" not in r.mailbox and not r.mailbox.startswith(".")


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9._%+@\-\[\]]{0,80}", fullmatch=True),
    st.sampled_from([DOMAIN, "mail.example.org"]),
)
def test_the_parser_on_address_like_text(address: str, domain: str) -> None:
    with contextlib.suppress(AddressError):
        parse_recipient(address, domain)
    with contextlib.suppress(AddressError):
        parse_sender(address)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_the_sender_parser_raises_only_its_typed_error(address: str) -> None:
    with contextlib.suppress(AddressError):
        parse_sender(address)


@pytest.mark.parametrize(
    "sender",
    [
        None,
        "bob@m-paris.valise.local",
        "alice@m-hanoi.valise.local",
        "alice@external.example",
        "alice@m-paris.valise.local.external.example",
        "alice+x@m-paris.valise.local",
        '"alice"@m-paris.valise.local',
    ],
)
def test_an_integrator_sends_only_as_itself(sender: str | None) -> None:
    with pytest.raises(SenderNotOwnedError):
        own_sender(sender, "alice", "M-PARIS", "valise.local")


def test_an_integrators_own_address_in_any_case_is_its_own() -> None:
    for sender in ("alice@m-paris.valise.local", "Alice@M-PARIS.Valise.Local"):
        assert own_sender(sender, "alice", "M-PARIS", "valise.local") == sender
