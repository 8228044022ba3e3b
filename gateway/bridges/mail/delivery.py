"""Mail delivery at a site: documents received here, and DSNs back to local senders.

Called by :func:`deliver_locally` for a mailbox whose mode is
``maildir`` or ``smtp`` (the document is already in the HTTP inbox, DIR/inbox/ID/),
and by the SMTP bridge for the DSN of a message that failed.

The mail that is delivered:
- a document that came in through an SMTP bridge (one part, ``message/rfc822``) is
  the sender's MIME message, byte for byte as it was received in DATA, under this
  site's X-Valise-Origin and X-Valise-Message-Id, if its header fields speak for the
  origin alone and it is safe to send (gateway/bridges/mail/passthrough.py: From,
  Sender, Reply-To and the other reply, bounce and receipt fields name only addresses
  of the origin, no X-Valise or authentication-results field, no line over 998
  bytes, no bare CR or LF or NUL); otherwise it is wrapped as an attachment;
- any other document (HTTP API, ``valise send``) is wrapped in a MIME message built
  from the sealed header: From the originator (or ``valise@<origin>.<domain>``), To
  the mailbox, the subject, the parts as attachments. It is deterministic (Date is
  the envelope's creation time, Message-ID the message id), so a retry builds the
  same bytes. The subject and file names are made safe for a header first
  (gateway/bridges/mail/headers.py).

What a remote site chose in the sealed header is checked before it is used
(gateway/bridges/mail/address.py): the mailbox must be one plain local dot-atom, or
the document goes to the default mailbox (``postmaster`` at the smarthost,
``default`` in the Maildir); the originator must be an address of the origin site
itself, or there is none. Each refusal is logged, a refused mailbox also in the
audit log (``delivery.mailbox_refused``).

Where it goes:
- ``maildir``: ``<[delivery] maildir>/<mailbox>/`` (gateway/bridges/mail/maildir.py),
  exactly once per message id;
- ``smtp``: the smarthost, ``MAIL FROM`` the originator (null when there is none
  that passed the check), ``RCPT TO:<mailbox@site.<domain>>`` (the address the
  sender used, which the local mail server is expected to accept or rewrite).
  Once the smarthost has answered 250 a marker DIR/mail-delivered/ID is written, so
  that a retry after a crash does not send it again (a crash between the 250 and
  the marker can still duplicate: SMTP has no way to ask the server).

Temporary failures raise :class:`DeliveryDeferred` (a Retry: retried with backoff); a
smarthost's permanent refusal raises :class:`MailRefused` (a Refused), which the
delivery loop records as undeliverable (the document stays in the HTTP inbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from envelope.model import SealedHeader
from gateway.bridges.mail import maildir
from gateway.bridges.mail.address import (
    AddressError,
    FieldCheck,
    delivery_mailbox,
    origin_sender,
    parse_recipient,
    site_address,
)
from gateway.bridges.mail.headers import safe_filename, subject_header
from gateway.bridges.mail.passthrough import refusal, stamp, stamp_lines
from gateway.bridges.mail.smarthost import send_via_smarthost
from gateway.proof import audit
from gateway.relay.handoff import DeliveryDeferred
from gateway.runtime.errors import Refused, Retry
from gateway.site.context import SiteContext

log = logging.getLogger("valise.mail")
RFC822 = "message/rfc822"
MARKERS = "mail-delivered"
MAX_SHOWN_CHARS = 320  # of a refused field, in the log and the audit log
_MEDIA_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)")


class MailRefused(Refused):
    """The local mail server refused the message for good."""


def gateway_name(ctx: SiteContext, site: str | None = None) -> str:
    """``<site>.<domain>``: this gateway's name in mail (EHLO, Message-ID, DSN)."""
    return f"{(site or ctx.here).lower()}.{ctx.config.smtp.domain.strip('.').lower()}"


def _parts(folder: Path) -> list[tuple[str, str, bytes]]:
    meta = json.loads((folder / ".valise.json").read_text())
    return [(p["name"], p["media_type"], (folder / p["name"]).read_bytes()) for p in meta["parts"]]


def _attachment_type(media_type: str) -> tuple[str, str]:
    """The type to attach a part as: its own, unless MIME forbids base64 for it
    (message/*, multipart/*: RFC 2046 5.2.1) or it is not a plain type/subtype."""
    m = _MEDIA_TYPE.fullmatch(media_type.split(";", 1)[0].strip().lower())
    if m is None or m[1] in ("message", "multipart"):
        return "application", "octet-stream"
    return m[1], m[2]


def compose(
    parts: list[tuple[str, str, bytes]],
    sealed: SealedHeader,
    *,
    message_id: str,
    origin: str,
    created: datetime,
    sender: str,
    recipient: str,
    domain: str,
) -> bytes:
    """The mail for a document: the message itself if it is one that may pass, else a
    wrapper; this site's X-Valise-Origin and X-Valise-Message-Id on top of either.

    ``origin`` is the verified origin site and ``domain`` the ``[smtp] domain``;
    ``sender`` and ``recipient`` must be plain addresses (checked by the caller); the
    subject and the part names are the remote site's and are made safe here
    (gateway/bridges/mail/headers.py). A ``message/rfc822`` part passes only if
    gateway/bridges/mail/passthrough.py finds nothing in it that speaks for anyone
    but the origin or could upset the smarthost (SMTP smuggling, a line over 998
    bytes); else it is wrapped, and why is logged (``rfc822_wrapped``).
    """
    if len(parts) == 1 and parts[0][1].lower() == RFC822:
        why = refusal(parts[0][2], origin, domain)
        if why is None:
            return stamp(parts[0][2], message_id=message_id, origin=origin)
        event = {"event": "rfc822_wrapped", "id": message_id, "origin": origin}
        log.info(json.dumps({**event, "reason": why[:MAX_SHOWN_CHARS]}))
    body = EmailMessage(policy=SMTP)
    body.set_content(
        f"Valise document {message_id} from {origin}, {len(parts)} part(s) attached.\n"
    )
    for name, media_type, data in parts:
        maintype, subtype = _attachment_type(media_type)
        body.add_attachment(data, maintype=maintype, subtype=subtype, filename=safe_filename(name))
    body.set_boundary(f"=_valise-{message_id}")
    # The header section is written here, not by the email package, which decodes
    # encoded words it is handed and would write a CR LF found inside one.
    head = [
        stamp_lines(message_id=message_id, origin=origin).removesuffix("\r\n"),
        f"From: {sender}",
        f"To: {recipient}",
        f"Subject: {subject_header(sealed.subject or f'Valise document from {origin}')}",
        f"Date: {format_datetime(created)}",
        f"Message-ID: <{message_id}@valise>",
    ]
    return "\r\n".join(head).encode("ascii") + b"\r\n" + body.as_bytes()


async def deliver_mail(
    ctx: SiteContext, mode: str, message_id: str, sealed: SealedHeader, folder: Path
) -> None:
    """Hand the document in ``folder`` to ``mode`` (``maildir`` or ``smtp``).

    The sealed mailbox and originator were chosen by a remote site: a mailbox that is
    not one plain local dot-atom is replaced by the default mailbox, an originator
    that is not an address of the origin site by none, and either refusal is
    recorded (the log and the audit log) before anything is delivered.

    Raises :class:`DeliveryDeferred` (retry later) or :class:`MailRefused`.
    """
    record = await ctx.store.get_envelope(message_id)
    origin = record.origin if record is not None else "unknown"
    created = record.created if record is not None else datetime.now(UTC)
    domain = ctx.config.smtp.domain
    mailbox = delivery_mailbox(sealed.mailbox)
    originator = origin_sender(sealed.originator, origin, domain)
    await _record_refusals(ctx, message_id, origin, sealed, mailbox, originator)
    recipient = site_address(ctx.here, mailbox.value or "postmaster", domain)
    sender = originator.value
    try:
        parts = await asyncio.to_thread(_parts, folder)
    except (OSError, ValueError, KeyError) as exc:
        raise DeliveryDeferred(f"cannot read {folder}: {exc}") from exc
    # Composing reads and encodes every part (base64 for a wrapped one): off the event
    # loop, so a large document does not stall the relay meanwhile.
    data = await asyncio.to_thread(
        compose,
        parts,
        sealed,
        message_id=message_id,
        origin=origin,
        created=created,
        sender=sender or f"valise@{gateway_name(ctx, origin)}",
        recipient=recipient,
        domain=domain,
    )
    marker_dir = ctx.config.directory / MARKERS
    marker = marker_dir / message_id
    if mode == "maildir":
        root = ctx.config.directory / ctx.config.delivery.maildir
        box = maildir.mailbox_folder(root, mailbox.value)
        try:
            marker_dir.mkdir(mode=0o700, exist_ok=True)
            path = await asyncio.to_thread(maildir.deliver, box, message_id, data, marker=marker)
        except OSError as exc:
            raise DeliveryDeferred(f"Maildir {box}: {exc}") from exc
        log.info(json.dumps({"event": "maildir_delivered", "id": message_id, "path": str(path)}))
    elif mode == "smtp":
        if marker.exists():
            return
        await _to_smarthost(ctx, mail_from=sender or "", to=recipient, data=data, what=message_id)
        marker_dir.mkdir(mode=0o700, exist_ok=True)
        marker.touch()
        log.info(json.dumps({"event": "smarthost_delivered", "id": message_id, "to": recipient}))
    else:
        raise ValueError(f"unknown delivery mode {mode!r}")


async def _record_refusals(
    ctx: SiteContext,
    message_id: str,
    origin: str,
    sealed: SealedHeader,
    mailbox: FieldCheck,
    originator: FieldCheck,
) -> None:
    """Log each refused field; a refused mailbox also goes to the audit log (a site's
    own bridge never seals one: it is an attempt to steer the delivery)."""
    for field, given, check in (
        ("mailbox", sealed.mailbox, mailbox),
        ("originator", sealed.originator, originator),
    ):
        if check.refused is None or given is None:
            continue
        shown = given[:MAX_SHOWN_CHARS]
        level = logging.WARNING if field == "mailbox" else logging.INFO
        event = {"event": f"{field}_refused", "id": message_id, "origin": origin}
        log.log(level, json.dumps({**event, "given": shown, "reason": check.refused}))
        if field != "mailbox":
            continue
        try:
            await audit.record(
                ctx.store,
                actor=ctx.here,
                action="delivery.mailbox_refused",
                subject=message_id,
                result="refused",
                detail={"origin": origin, "given": shown, "reason": check.refused},
            )
        except audit.AuditError as exc:  # recorded before delivery, or not delivered yet
            raise DeliveryDeferred(f"cannot record the refused mailbox: {exc}") from exc


async def _to_smarthost(
    ctx: SiteContext, *, mail_from: str, to: str, data: bytes, what: str
) -> None:
    delivery = ctx.config.delivery
    if delivery.smarthost_address is None:  # a mailbox's smtp mode needs one: checked at load
        raise DeliveryDeferred("[delivery] smarthost is not set")
    try:
        await send_via_smarthost(
            delivery.smarthost_address,
            starttls=delivery.starttls,
            helo=gateway_name(ctx),
            mail_from=mail_from,
            recipients=[to],
            data=data,
        )
    except Retry as exc:  # SmarthostUnavailable
        raise DeliveryDeferred(str(exc)) from exc
    except Refused as exc:  # SmarthostRefused
        raise MailRefused(f"{what}: {exc}") from exc


async def deliver_dsn(ctx: SiteContext, message_id: str, to: str, dsn: bytes) -> bool:
    """Deliver the DSN for ``message_id`` to ``to``, which must be a local address
    of this site (``mailbox@<here>.<domain>``: gateway/bridges/mail/address.py
    ``bounce_recipient``), by that mailbox's outbound mode. False when its mode is
    ``inbox`` (there is no mail store to put it in; the failure shows in ``valise
    status`` and the HTTP API).

    Raises :class:`DeliveryDeferred` or :class:`MailRefused` (also for an address
    that is not local: a DSN never leaves the site).
    """
    try:
        rcpt = parse_recipient(to, ctx.config.smtp.domain)
        if rcpt.site != ctx.here:
            raise AddressError(f"not an address of {ctx.here}")
    except AddressError as exc:
        raise MailRefused(f"DSN {message_id}: {to!r} is not a local address: {exc}") from None
    mailbox = rcpt.mailbox
    mode = ctx.config.delivery.mode_for(mailbox)
    if mode == "maildir":
        root = ctx.config.directory / ctx.config.delivery.maildir
        box = maildir.mailbox_folder(root, mailbox)
        # An MDA records the null reverse-path of a bounce as Return-Path (RFC 5321 4.4).
        data = b"Return-Path: <>\r\n" + dsn
        try:
            await asyncio.to_thread(maildir.deliver, box, f"dsn-{message_id}", data)
        except OSError as exc:
            raise DeliveryDeferred(f"Maildir {box}: {exc}") from exc
        return True
    if mode == "smtp":
        address = site_address(ctx.here, mailbox, ctx.config.smtp.domain)
        await _to_smarthost(ctx, mail_from="", to=address, data=dsn, what=f"DSN {message_id}")
        return True
    return False


async def deliver_locally(
    ctx: SiteContext, message_id: str, sealed: SealedHeader, folder: Path
) -> None:
    """The site's hand-off (gateway/relay/handoff.py): the opened document in ``folder``
    goes on by its mailbox's mode (``[delivery] mode``, or the mailbox's override in
    ``[delivery] mailboxes``); a mailbox that is not one plain local dot-atom is the
    default mailbox. ``inbox`` does nothing more: the document stays in DIR/inbox/ID/."""
    mode = ctx.config.delivery.mode_for(delivery_mailbox(sealed.mailbox).value)
    if mode == "inbox":
        return
    await deliver_mail(ctx, mode, message_id, sealed, folder)
