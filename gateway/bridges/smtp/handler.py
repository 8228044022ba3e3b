"""The SMTP bridge's transaction: MAIL, RCPT and DATA become queued envelopes.

Rules:
- ``RCPT TO:<mailbox@site.<domain>>`` is checked at once: a foreign domain is
  relaying (``550 5.7.1``), a site that is not active in the directory is ``550
  5.1.1``, more than ``[smtp] max_recipients`` is ``452 4.5.3`` (the client sends the
  rest in another transaction). A site in force with no active encryption key yet (a
  revocation window) is accepted: its envelope is queued held and sealed to its new
  key once the directory has one (gateway/relay/key_wait.py).
- One envelope per (site, mailbox): recipients at one site with the same mailbox
  share an envelope; a different mailbox or site gets its own (the sealed header
  names one mailbox; the DSN and the receipt then speak of one recipient each).
  Each envelope carries the whole message, as received, as its only part
  ``message.eml`` (``message/rfc822``); the subject, the sender (as the
  originator) and the mailbox travel in the sealed header.
- ``250 2.0.0 Ok: queued as ID ...`` is answered only once every envelope is
  durably committed; the message ids are chosen first, and the sender record for
  the DSN (gateway/bridges/smtp/sent.py) is written before the commit, so no
  queued message is ever without one. If the store fails half way the answer is
  ``451 4.3.0`` and the client sends the message again: the envelopes already
  queued are then delivered twice (SMTP has no way to accept part of a message).
  A recipient refused at sealing time (the directory changed since RCPT) gets
  ``554 5.6.0``, naming any envelopes already queued, so that the client does not
  retry for ever.
- ``MAIL FROM`` in a session that authenticated must be the integrator's own
  address, ``<name>@<here>.<domain>`` (``553 5.7.1`` otherwise, the null sender too:
  smtp_address.own_sender); without AUTH (``require_auth = no``) there is no
  identity to tie it to.
- A message with a bare CR or LF is refused (``550 5.6.0``), as is one whose
  ``X-Valise-Expires`` is not a number of seconds (``554 5.6.0``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from envelope.errors import UsageError
from envelope.seal import DEFAULT_TTL
from envelope.values import new_message_id
from gateway.bridges.mail.address import (
    AddressSyntaxError,
    ForeignDomainError,
    MailRecipient,
    SenderNotOwnedError,
    own_sender,
    parse_recipient,
    parse_sender,
)
from gateway.bridges.mail.dsn import header_section
from gateway.bridges.smtp.message import MessageError, has_bare_line_ending, message_facts
from gateway.bridges.smtp.replies import (
    BAD_DATA_ENDING,
    NO_RECIPIENTS,
    NOT_QUEUED,
    RECIPIENT_OK,
    SENDER_OK,
    TOO_MANY_RECIPIENTS,
    queued,
)
from gateway.bridges.smtp.sent import SentRecord, SentRecords
from gateway.bridges.smtp.server import MailEnvelope
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import SiteContext
from routing.directory import DirectoryError

log = logging.getLogger("valise.smtp")
PART_NAME = "message.eml"
PART_MEDIA_TYPE = "message/rfc822"


def _groups(recipients: list[tuple[str, MailRecipient]]) -> dict[MailRecipient, list[str]]:
    groups: dict[MailRecipient, list[str]] = {}
    for given, parsed in recipients:
        groups.setdefault(parsed, []).append(given)
    return groups


class SmtpHandler:
    """aiosmtpd handler hooks (``handle_*``), one instance for all connections."""

    def __init__(self, ctx: SiteContext, records: SentRecords) -> None:
        self.ctx = ctx
        self.records = records

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> list[str]:
        session.host_name = hostname
        lines = list(responses)
        lines.insert(len(lines) - 1, "250-ENHANCEDSTATUSCODES")
        return lines

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            sender = parse_sender(address)
        except AddressSyntaxError as exc:
            return f"553 5.1.7 Bad sender address: {exc}"
        if session.authenticated:
            try:
                integrator = str(session.auth_data)  # the name our AUTH check set
                own_sender(sender, integrator, self.ctx.here, self.ctx.config.smtp.domain)
            except SenderNotOwnedError as exc:
                log.warning(
                    json.dumps(
                        {
                            "event": "smtp_sender_refused",
                            "auth": session.auth_data,
                            "sender": address[:254],
                            "reason": str(exc),
                        }
                    )
                )
                return f"553 5.7.1 Sender address rejected: {exc}"
        assert isinstance(envelope, MailEnvelope)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.sender = sender
        return SENDER_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        assert isinstance(envelope, MailEnvelope)
        if len(envelope.recipients) >= self.ctx.config.smtp.max_recipients:
            return TOO_MANY_RECIPIENTS
        try:
            rcpt = parse_recipient(address, self.ctx.config.smtp.domain)
        except ForeignDomainError as exc:
            return f"550 5.7.1 <{address}>: relaying denied: {exc}"
        except AddressSyntaxError as exc:
            return f"553 5.1.3 <{address}>: {exc}"
        directory = self.ctx.directory
        try:
            # In force is enough: one with no active encryption key yet waits for it.
            if not directory.knows(rcpt.site):
                raise DirectoryError(f"no such site {rcpt.site}")
        except DirectoryError as exc:
            return f"550 5.1.1 <{address}>: {exc}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.recipients.append((address, rcpt))
        return RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope, MailEnvelope)
        content = envelope.original_content or b""
        if has_bare_line_ending(content):
            return BAD_DATA_ENDING
        if not envelope.recipients:
            return NO_RECIPIENTS
        try:
            facts = message_facts(content)
        except MessageError as exc:
            return f"554 5.6.0 {exc}"
        now = datetime.now(UTC)
        expires = now + (facts.expires_in or DEFAULT_TTL)
        headers = header_section(content)
        ids: list[str] = []
        for rcpt, given in _groups(envelope.recipients).items():
            message_id = new_message_id(now, secrets.token_bytes(10))
            record = SentRecord(
                message_id=message_id,
                sender=envelope.sender,
                recipients=tuple(given),
                site=rcpt.site,
                mailbox=rcpt.mailbox,
                arrival=now,
                expires=expires,
                headers=headers,
                integrator=session.auth_data if session.authenticated else None,
            )
            try:
                await asyncio.to_thread(self.records.write, record)
                await send_documents(
                    self.ctx,
                    [rcpt.site],
                    [Document(PART_NAME, PART_MEDIA_TYPE, content)],
                    now=now,
                    subject=facts.subject,
                    originator=envelope.sender,
                    mailbox=rcpt.mailbox,
                    expires=expires,
                    message_id=message_id,
                )
            except UsageError as exc:  # refused before sealing: nothing was queued for it
                self.records.remove(message_id)
                self._not_queued(ids, exc)
                queued_already = f"; already queued as {' '.join(ids)}" if ids else ""
                return f"554 5.6.0 Message refused for {rcpt.site}: {exc}{queued_already}"
            except Exception as exc:  # store down, disk full: the client must retry
                # The record stays: if the commit did happen, its DSN is still owed
                # (a record whose message never reached the store is swept later).
                self._not_queued(ids, exc)
                return NOT_QUEUED
            ids.append(message_id)
        log.info(
            json.dumps(
                {
                    "event": "smtp_queued",
                    "ids": ids,
                    "recipients": len(envelope.recipients),
                    "bytes": len(content),
                    "auth": session.auth_data if session.authenticated else None,
                }
            )
        )
        return queued(ids)

    def _not_queued(self, ids: list[str], exc: Exception) -> None:
        log.error(
            json.dumps(
                {
                    "event": "smtp_not_queued",
                    "queued": ids,
                    "reason": f"{type(exc).__name__}: {exc}",
                }
            )
        )
