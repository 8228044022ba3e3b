"""SMTP addresses for the bridge: which site and mailbox a ``RCPT TO`` names. Pure.

Rules:
- A recipient is ``mailbox@site-id.<domain>``: the domain is ``[smtp] domain``
  (``valise.local`` by default), compared case-insensitively, and the one label
  before it is the destination site id (``m-hanoi`` -> ``M-HANOI``). Nothing else is
  ours to accept: any other domain is relaying, which the bridge refuses.
- The mailbox is a plain dot-atom local part of at most 64 characters drawn from
  letters, digits and ``. _ % + -`` (no quoted strings, no leading, trailing or
  doubled dots), folded to lower case: Valise mailboxes are case-insensitive
  (``[delivery] mailboxes`` compares them in lower case too) and become Maildir
  folder names at the destination, so they must be safe as path components.
- The sender (``MAIL FROM``) is checked loosely (it is a local mailbox at the origin,
  kept for the DSN): printable ASCII, one ``@`` with both sides non-empty, at most
  254 characters. ``<>``, the null sender, is None.
- Every refusal is an :class:`AddressError`; its subclass says why, so the SMTP
  handler can answer with the right enhanced status code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ADDRESS_CHARS = 254  # RFC 5321 4.5.3.1.3 (path 256 minus the angle brackets)
MAX_MAILBOX_CHARS = 64  # RFC 5321 4.5.3.1.1
_MAILBOX = re.compile(r"[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*")
_SITE_ID = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
NULL_SENDER = "<>"


class AddressError(ValueError):
    """The address cannot be used; the subclass tells the reply code."""


class AddressSyntaxError(AddressError):
    """Not an address the bridge understands (553 5.1.3)."""


class ForeignDomainError(AddressError):
    """An address outside ``<site>.<domain>``: relaying is refused (550 5.7.1)."""


@dataclass(frozen=True)
class MailRecipient:
    site: str  # the site id, upper case: "M-HANOI"
    mailbox: str  # the local part, lower case: "registry"


def parse_recipient(address: str, domain: str) -> MailRecipient:
    """The site and mailbox of ``mailbox@site.<domain>``.

    Raises :class:`AddressSyntaxError` or :class:`ForeignDomainError`.
    """
    if not isinstance(address, str) or len(address) > MAX_ADDRESS_CHARS:
        raise AddressSyntaxError("the address is too long")
    local, at, host = address.rpartition("@")
    if not at or not local or not host:
        raise AddressSyntaxError("the address is not mailbox@domain")
    if len(local) > MAX_MAILBOX_CHARS or _MAILBOX.fullmatch(local) is None:
        raise AddressSyntaxError("the mailbox must be a plain local part (letters, digits, ._%+-)")
    suffix = "." + domain.strip(".").lower()
    if not host.isascii() or not host.lower().endswith(suffix):
        raise ForeignDomainError(f"only addresses at <site>{suffix} are accepted")
    host = host.lower()
    site = host[: -len(suffix)].upper()
    if _SITE_ID.fullmatch(site) is None:
        raise ForeignDomainError(f"{host} does not name a site under {suffix[1:]}")
    return MailRecipient(site=site, mailbox=local.lower())


def parse_sender(address: str) -> str | None:
    """The ``MAIL FROM`` address as given, or None for the null sender ``<>``.

    Raises :class:`AddressSyntaxError`.
    """
    if address in (NULL_SENDER, ""):
        return None
    if len(address) > MAX_ADDRESS_CHARS or _PRINTABLE.fullmatch(address) is None:
        raise AddressSyntaxError("the sender must be printable ASCII, at most 254 characters")
    local, at, host = address.rpartition("@")
    quoted = len(local) > 1 and local[0] == local[-1] == '"'
    if not at or not local or not host or ("@" in local and not quoted):
        raise AddressSyntaxError("the sender is not mailbox@domain")
    return address


def mailbox_of(address: str) -> str:
    """The local part of a (valid) sender address, lower case: its mailbox at the origin."""
    local = address.rpartition("@")[0].strip('"')
    return local.lower()


def site_address(site: str, mailbox: str, domain: str) -> str:
    """``mailbox@site.<domain>``, the form the bridge accepts (inverse of parse_recipient)."""
    return f"{mailbox}@{site.lower()}.{domain.strip('.').lower()}"
