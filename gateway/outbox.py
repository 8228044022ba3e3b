"""Sending from a site: seal documents to their destinations' active keys and queue them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from envelope.errors import SchemaError, UsageError
from envelope.model import PartInfo, SealedHeader
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.delivery import submit
from gateway.site import SiteContext
from routing.directory import DirectoryError


@dataclass(frozen=True)
class Document:
    name: str
    media_type: str
    data: bytes


async def send_documents(
    ctx: SiteContext,
    to: Sequence[str],
    documents: Sequence[Document],
    *,
    now: datetime,
    subject: str | None = None,
    originator: str | None = None,
    priority: Priority = Priority.ROUTINE,
    doc_class: str = "document",
    dossier: str | None = None,
) -> str:
    """Seal and durably queue; return the message id. Raises UsageError."""
    try:
        recipients = [Recipient(s, ctx.directory.site(s).active_encryption_key()) for s in to]
        routing = new_routing(
            origin=ctx.here,
            destinations=list(to),
            now=now,
            priority=priority,
            doc_class=doc_class,
            dossier=dossier,
        )
    except (DirectoryError, SchemaError) as exc:
        raise UsageError(str(exc)) from None
    sealing = Sealing(
        routing=routing,
        sender=ctx.keys.signing,
        recipients=recipients,
        sealed=SealedHeader(
            parts=tuple(PartInfo(d.name, d.media_type, len(d.data)) for d in documents),
            subject=subject,
            originator=originator,
        ),
    )
    await submit(ctx, seal_bytes(sealing, [d.data for d in documents]), now)
    return routing.message_id
