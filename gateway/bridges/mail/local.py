"""Local delivery: what happens to a document once it is opened at its destination.

The opened parts are always kept under DIR/inbox/ID/ (the HTTP inbox). Then, by
``[delivery] mode`` (or a per-mailbox override in ``[delivery] mailboxes``), the
document may also be handed on: ``inbox`` does nothing more, ``maildir`` and
``smtp`` are implemented by the SMTP bridge's delivery module. A delivery that
fails raises, and the item stays ``received`` to be retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from config.site import ConfigError
from envelope.model import SealedHeader
from gateway.bridges.mail.address import delivery_mailbox
from gateway.site.context import SiteContext


class DeliveryDeferred(Exception):
    """Local delivery failed for now (mail server down, disk full); retried later."""


Deliverer = Callable[[SiteContext, str, SealedHeader, Path], Awaitable[None]]


def mode_for(ctx: SiteContext, mailbox: str | None) -> str:
    """The delivery mode of ``mailbox`` (per-mailbox override, else the site default)."""
    overrides: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in ctx.config.delivery.mailboxes.split(","))):
        name, sep, mode = item.partition("=")
        if not sep or mode.strip() not in ("inbox", "maildir", "smtp"):
            raise ConfigError(f"[delivery] mailboxes: {item!r} is not MAILBOX=inbox|maildir|smtp")
        overrides[name.strip().lower()] = mode.strip()
    return overrides.get((mailbox or "").lower(), ctx.config.delivery.mode)


async def deliver_locally(
    ctx: SiteContext, message_id: str, sealed: SealedHeader, folder: Path
) -> None:
    """Hand the opened document in ``folder`` on, by its mailbox's mode (a mailbox
    that is not one plain local dot-atom is the default mailbox: mail_delivery.py)."""
    mode = mode_for(ctx, delivery_mailbox(sealed.mailbox).value)
    if mode == "inbox":
        return
    from gateway.bridges.mail.delivery import deliver_mail

    await deliver_mail(ctx, mode, message_id, sealed, folder)
