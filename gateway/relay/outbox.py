"""Sending from a site: seal documents to their destinations' active keys and queue them.

:func:`send_documents` seals documents held in memory; :func:`send_files` seals
files (the HTTP API stages request bodies on disk) in a worker thread, streaming,
and holds only the sealed envelope in memory, which the store keeps as bytes.
Either returns once the envelope is durably queued. A caller may fix the message
id in advance (``message_id``): the store accepts a message id once, so sealing the
same submission again after a crash queues nothing twice.

A destination in force with no active encryption key (a revocation window) does not
refuse the send: the envelope is queued held, waiting for its key, and sealed to it
by the running site once the directory publishes one (gateway/relay/key_wait.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from envelope.errors import SchemaError, UsageError
from envelope.model import PartInfo, RoutingHeader
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.sealed import sealed_header
from envelope.values import Priority, check_message_id
from gateway.relay.envelope_io import InputPart, seal_to_file
from gateway.relay.key_wait import hold_reason, keyless_destinations, throwaway_key
from gateway.relay.submit import submit_sealed
from gateway.site.context import SiteContext
from routing.directory import DirectoryError


@dataclass(frozen=True)
class Document:
    name: str
    media_type: str
    data: bytes


RESERVED_CLASS = "receipt"


def _address(
    ctx: SiteContext,
    to: Sequence[str],
    *,
    now: datetime,
    priority: Priority,
    doc_class: str,
    dossier: str | None,
    expires: datetime | None,
    in_reply_to: str | None,
    message_id: str | None,
) -> tuple[list[Recipient], RoutingHeader, str | None]:
    """The recipients, the routing header, and the hold reason if a destination has
    no active encryption key yet (its stanza then opens for no one: key_wait.py).

    The class ``receipt`` is reserved to the receipts this gateway seals itself
    (gateway/relay/opening.py seal_reply): a submitted "receipt" would pass HQ, which cannot open
    it, as its sender's receipt of ``in_reply_to`` and close that delivery there."""
    if doc_class == RESERVED_CLASS:
        raise UsageError(
            f"class {RESERVED_CLASS!r} is reserved to the receipts the gateway seals itself"
        )
    try:
        waiting = keyless_destinations(ctx.directory, to)
        recipients = [
            Recipient(
                s,
                throwaway_key() if s in waiting else ctx.directory.site(s).active_encryption_key(),
            )
            for s in to
        ]
        routing = new_routing(
            origin=ctx.here,
            destinations=list(to),
            now=now,
            expires=expires,
            priority=priority,
            doc_class=doc_class,
            dossier=dossier,
            in_reply_to=in_reply_to,
        )
        if message_id is not None:
            routing = dataclasses.replace(routing, message_id=check_message_id(message_id))
    except (DirectoryError, SchemaError) as exc:
        raise UsageError(str(exc)) from None
    return recipients, routing, hold_reason(waiting) if waiting else None


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
    expires: datetime | None = None,
    in_reply_to: str | None = None,
    mailbox: str | None = None,
    message_id: str | None = None,
) -> str:
    """Seal and durably queue; return the message id. Raises UsageError, StoreError."""
    recipients, routing, held = _address(
        ctx,
        to,
        now=now,
        priority=priority,
        doc_class=doc_class,
        dossier=dossier,
        expires=expires,
        in_reply_to=in_reply_to,
        message_id=message_id,
    )
    sealing = Sealing(
        routing=routing,
        sender=ctx.keys.signing,
        recipients=recipients,
        sealed=sealed_header(
            [PartInfo(d.name, d.media_type, len(d.data)) for d in documents],
            subject,
            originator,
            mailbox,
        ),
    )
    data = seal_bytes(sealing, [d.data for d in documents])
    await submit_sealed(ctx, sealing, data, now, held=held)
    return routing.message_id


async def send_files(
    ctx: SiteContext,
    to: Sequence[str],
    files: Sequence[InputPart],
    *,
    now: datetime,
    workdir: Path,
    subject: str | None = None,
    originator: str | None = None,
    priority: Priority = Priority.ROUTINE,
    doc_class: str = "document",
    dossier: str | None = None,
    expires: datetime | None = None,
    in_reply_to: str | None = None,
    message_id: str | None = None,
) -> str:
    """Seal ``files`` (streaming, in a thread; the envelope is staged in ``workdir``) and
    durably queue; return the message id. Raises UsageError, StoreError or OSError."""
    recipients, routing, held = _address(
        ctx,
        to,
        now=now,
        priority=priority,
        doc_class=doc_class,
        dossier=dossier,
        expires=expires,
        in_reply_to=in_reply_to,
        message_id=message_id,
    )
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".seal-") as staging:
        out = Path(staging) / "envelope.valise"

        def seal() -> tuple[Sealing, bytes]:
            sealing = seal_to_file(
                out,
                routing=routing,
                sender=ctx.keys.signing,
                recipients=recipients,
                inputs=files,
                subject=subject,
                originator=originator,
                durable=False,  # the store's commit is what makes it durable
            )
            return sealing, out.read_bytes()

        sealing, data = await asyncio.to_thread(seal)
    await submit_sealed(ctx, sealing, data, now, held=held)
    return routing.message_id
