"""SMTP addresses for the bridge: which site and mailbox a ``RCPT TO`` names. Pure.

Rules:
- A recipient is ``mailbox@site-id.<domain>``: the domain is ``[smtp] domain``
  (``valise.local`` by default), compared case-insensitively, and the one label
  before it is the destination site id (``m-hanoi`` -> ``M-HANOI``). Nothing else is
  ours to accept: any other domain is relaying, which the bridge refuses.
- The mailbox is a plain dot-atom local part of at most 64 characters drawn from
  ASCII letters, digits and ``. _ + -`` (no quoted strings, no leading, trailing or
  doubled dots), folded to lower case: Valise mailboxes are case-insensitive
  (``[delivery] mailboxes`` compares them in lower case too) and become Maildir
  folder names at the destination, so they must be safe as path components. ``%``
  is not allowed: ``user%other.example@host`` is the "percent hack" source route,
  which mail servers such as Postfix still honour by default (``allow_percent_hack``),
  so a mailbox with ``%`` could send a local delivery to another domain.
- :func:`local_mailbox` is that rule alone. At the destination the sealed
  ``<mailbox>`` was chosen by a remote site: :func:`delivery_mailbox` keeps it only
  if it passes the rule, else the document goes to the default mailbox and the
  reason is returned to be recorded. The originator reaches ``MAIL FROM`` and
  ``From:`` only if it is an address of the origin site itself
  (:func:`origin_sender`): a site speaks for its own mailboxes, never for another
  site's or an outside domain's, and the smarthost never gets a reverse-path (the
  address its bounces go to) outside Valise. A DSN goes only to a local address
  (:func:`bounce_recipient`).
- The sender (``MAIL FROM``) is checked loosely (it is a local mailbox at the origin,
  kept for the DSN): printable ASCII, one ``@`` with both sides non-empty, at most
  254 characters. ``<>``, the null sender, is None. In a session that authenticated
  (:func:`own_sender`) it must be the integrator itself, ``<name>@<here>.<domain>``
  (any case): an integrator speaks for its own mailbox, never for another
  integrator's, another site's or an outside address, and never as the null sender
  (a submission that wants no bounce and names nobody).
- Every refusal is an :class:`AddressError`; its subclass says why, so the SMTP
  handler can answer with the right enhanced status code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ADDRESS_CHARS = 254  # RFC 5321 4.5.3.1.3 (path 256 minus the angle brackets)
MAX_MAILBOX_CHARS = 64  # RFC 5321 4.5.3.1.1
_MAILBOX = re.compile(r"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*")
_SITE_ID = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
NULL_SENDER = "<>"


class AddressError(ValueError):
    """The address cannot be used; the subclass tells the reply code."""


class AddressSyntaxError(AddressError):
    """Not an address the bridge understands (553 5.1.3)."""


class ForeignDomainError(AddressError):
    """An address outside ``<site>.<domain>``: relaying is refused (550 5.7.1)."""


class SenderNotOwnedError(AddressError):
    """A sender that is not the authenticated integrator's own address (553 5.7.1)."""


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
    mailbox = local_mailbox(local)
    suffix = "." + domain.strip(".").lower()
    if not host.isascii() or not host.lower().endswith(suffix):
        raise ForeignDomainError(f"only addresses at <site>{suffix} are accepted")
    host = host.lower()
    site = host[: -len(suffix)].upper()
    if _SITE_ID.fullmatch(site) is None:
        raise ForeignDomainError(f"{host} does not name a site under {suffix[1:]}")
    return MailRecipient(site=site, mailbox=mailbox)


def local_mailbox(value: str) -> str:
    """``value`` as a mailbox of a site: one plain dot-atom, folded to lower case.

    Raises :class:`AddressSyntaxError`.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MAILBOX_CHARS:
        raise AddressSyntaxError(f"the mailbox must be 1 to {MAX_MAILBOX_CHARS} characters")
    if _MAILBOX.fullmatch(value) is None:
        raise AddressSyntaxError("the mailbox must be a plain local part (letters, digits, ._+-)")
    return value.lower()


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


def own_sender(sender: str | None, integrator: str, here: str, domain: str) -> str:
    """``sender`` if it is the address of ``integrator`` at this site
    (``<integrator>@<here>.<domain>``, compared case-insensitively).

    Raises :class:`SenderNotOwnedError`.
    """
    mine = site_address(here, integrator, domain)
    if sender is None:
        raise SenderNotOwnedError(f"an authenticated submission comes from {mine}, not <>")
    try:
        rcpt = parse_recipient(sender, domain)
    except AddressError:
        rcpt = None
    if rcpt is None or (rcpt.site, rcpt.mailbox) != (here, integrator.lower()):
        raise SenderNotOwnedError(f"not owned by {integrator}: send as <{mine}>")
    return sender


def mailbox_of(address: str) -> str:
    """The local part of a (valid) sender address, lower case: its mailbox at the origin."""
    local = address.rpartition("@")[0].strip('"')
    return local.lower()


@dataclass(frozen=True)
class FieldCheck:
    """A field of a remote site's sealed header (or a sender) checked for use in mail:
    ``value`` is what to use (None: the default), ``refused`` why the given one was not."""

    value: str | None
    refused: str | None = None


def delivery_mailbox(mailbox: str | None) -> FieldCheck:
    """The mailbox to deliver a sealed ``<mailbox>`` to: itself if :func:`local_mailbox`
    takes it (lower case), else None (the default mailbox) with the reason."""
    if mailbox is None:
        return FieldCheck(None)
    try:
        return FieldCheck(local_mailbox(mailbox))
    except AddressSyntaxError as exc:
        return FieldCheck(None, f"mailbox refused: {exc}")


def origin_sender(originator: str | None, origin: str, domain: str) -> FieldCheck:
    """The originator as ``MAIL FROM`` / ``From:``: only ``mailbox@<origin>.<domain>``
    (normalised to lower case), else None with the reason."""
    if originator is None:
        return FieldCheck(None)
    try:
        sender = parse_recipient(originator, domain)
    except AddressError as exc:
        return FieldCheck(None, f"originator refused: {exc}")
    if sender.site != origin:
        return FieldCheck(None, f"originator refused: not an address of the origin {origin}")
    return FieldCheck(site_address(sender.site, sender.mailbox, domain))


def bounce_recipient(
    sender: str | None, integrator: str | None, here: str, domain: str
) -> FieldCheck:
    """Where the DSN of a message submitted here goes: the ``MAIL FROM`` if it is a
    local address of this site (``mailbox@<here>.<domain>``), else the mailbox of the
    integrator that authenticated the submission (its name at this site), else
    nowhere (None, with the reason). The null sender is never bounced to."""
    if sender is None:
        return FieldCheck(None, "null sender")
    why = "the sender is not an address of this site"
    try:
        rcpt = parse_recipient(sender, domain)
        if rcpt.site == here:
            return FieldCheck(site_address(here, rcpt.mailbox, domain))
    except AddressError as exc:
        why = f"the sender is not an address of this site: {exc}"
    if integrator is None:
        return FieldCheck(None, f"{why}, and the submission was not authenticated")
    try:
        return FieldCheck(site_address(here, local_mailbox(integrator), domain), why)
    except AddressSyntaxError as exc:
        return FieldCheck(None, f"{why}, and integrator {integrator!r} is no mailbox: {exc}")


def site_address(site: str, mailbox: str, domain: str) -> str:
    """``mailbox@site.<domain>``, the form the bridge accepts (inverse of parse_recipient)."""
    return f"{mailbox}@{site.lower()}.{domain.strip('.').lower()}"
