"""Mail delivery at a site: documents received here, and DSNs back to local senders.

Called by :func:`gateway.bridges.local.deliver_locally` for a mailbox whose mode is
``maildir`` or ``smtp`` (the document is already in the HTTP inbox, DIR/inbox/ID/),
and by the SMTP bridge for the DSN of a message that failed.

The mail that is delivered:
- a document that came in through an SMTP bridge (one part, ``message/rfc822``) is
  the sender's MIME message, byte for byte as it was received in DATA;
- any other document (HTTP API, ``valise send``) is wrapped in a MIME message built
  from the sealed header: From the originator (or ``valise@<origin>.<domain>``), To
  the mailbox, the subject, the parts as attachments. It is deterministic (Date is
  the envelope's creation time, Message-ID the message id), so a retry builds the
  same bytes.

Where it goes:
- ``maildir``: ``<[delivery] maildir>/<mailbox>/`` (gateway/bridges/maildir.py),
  exactly once per message id;
- ``smtp``: the smarthost, ``MAIL FROM`` the originator (null when there is none
  that is a valid address), ``RCPT TO:<mailbox@site.<domain>>`` (the address the
  sender used, which the local mail server is expected to accept or rewrite).
  Once the smarthost has answered 250 a marker DIR/mail-delivered/ID is written, so
  that a retry after a crash does not send it again (a crash between the 250 and
  the marker can still duplicate: SMTP has no way to ask the server).

Temporary failures raise :class:`DeliveryDeferred` (retried with backoff); a
smarthost's permanent refusal raises :class:`MailRefused`, which the delivery loop
records as undeliverable (the document stays in the HTTP inbox).
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

from config.site import enabled
from envelope.model import SealedHeader
from gateway.bridges import maildir
from gateway.bridges.local import DeliveryDeferred, mode_for
from gateway.bridges.smarthost import SmarthostRefused, SmarthostUnavailable, send_via_smarthost
from gateway.bridges.smtp_address import AddressError, mailbox_of, parse_sender, site_address
from gateway.site import SiteContext

log = logging.getLogger("valise.mail")
RFC822 = "message/rfc822"
MARKERS = "mail-delivered"
_MEDIA_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)")


class MailRefused(Exception):
    """The local mail server refused the message for good."""


def gateway_name(ctx: SiteContext, site: str | None = None) -> str:
    """``<site>.<domain>``: this gateway's name in mail (EHLO, Message-ID, DSN)."""
    return f"{(site or ctx.here).lower()}.{ctx.config.smtp.domain.strip('.').lower()}"


def _valid_sender(address: str | None) -> str | None:
    try:
        return parse_sender(address) if address else None
    except AddressError:
        return None


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
) -> bytes:
    """The mail for a document: the message itself if it is one, else a wrapper."""
    if len(parts) == 1 and parts[0][1].lower() == RFC822:
        return parts[0][2]
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = sealed.subject or f"Valise document from {origin}"
    msg["Date"] = format_datetime(created)
    msg["Message-ID"] = f"<{message_id}@valise>"
    msg["X-Valise-Message-Id"] = message_id
    msg["X-Valise-Origin"] = origin
    msg.set_content(f"Valise document {message_id} from {origin}, {len(parts)} part(s) attached.\n")
    for name, media_type, data in parts:
        maintype, subtype = _attachment_type(media_type)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    msg.set_boundary(f"=_valise-{message_id}")
    return msg.as_bytes()


async def deliver_mail(
    ctx: SiteContext, mode: str, message_id: str, sealed: SealedHeader, folder: Path
) -> None:
    """Hand the document in ``folder`` to ``mode`` (``maildir`` or ``smtp``).

    Raises :class:`DeliveryDeferred` (retry later) or :class:`MailRefused`.
    """
    record = await ctx.store.get_envelope(message_id)
    origin = record.origin if record is not None else "unknown"
    created = record.created if record is not None else datetime.now(UTC)
    domain = ctx.config.smtp.domain
    recipient = site_address(ctx.here, sealed.mailbox or "postmaster", domain)
    sender = _valid_sender(sealed.originator)
    try:
        parts = await asyncio.to_thread(_parts, folder)
    except (OSError, ValueError, KeyError) as exc:
        raise DeliveryDeferred(f"cannot read {folder}: {exc}") from exc
    data = compose(
        parts,
        sealed,
        message_id=message_id,
        origin=origin,
        created=created,
        sender=sender or f"valise@{gateway_name(ctx, origin)}",
        recipient=recipient,
    )
    marker_dir = ctx.config.directory / MARKERS
    marker = marker_dir / message_id
    if mode == "maildir":
        root = ctx.config.directory / ctx.config.delivery.maildir
        box = maildir.mailbox_folder(root, sealed.mailbox)
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


async def _to_smarthost(
    ctx: SiteContext, *, mail_from: str, to: str, data: bytes, what: str
) -> None:
    delivery = ctx.config.delivery
    try:
        await send_via_smarthost(
            delivery.smarthost,
            starttls=enabled(delivery.smarthost_starttls),
            helo=gateway_name(ctx),
            mail_from=mail_from,
            recipients=[to],
            data=data,
        )
    except SmarthostUnavailable as exc:
        raise DeliveryDeferred(str(exc)) from exc
    except SmarthostRefused as exc:
        raise MailRefused(f"{what}: {exc}") from exc


async def deliver_dsn(ctx: SiteContext, message_id: str, sender: str, dsn: bytes) -> bool:
    """Deliver the DSN for ``message_id`` to ``sender``, a local mailbox at this site,
    by that mailbox's outbound mode. False when its mode is ``inbox`` (there is no
    mail store to put it in; the failure shows in ``valise status`` and the HTTP API).

    Raises :class:`DeliveryDeferred` or :class:`MailRefused`.
    """
    mailbox = mailbox_of(sender)
    mode = mode_for(ctx, mailbox)
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
        await _to_smarthost(ctx, mail_from="", to=sender, data=dsn, what=f"DSN {message_id}")
        return True
    return False
