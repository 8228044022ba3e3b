"""What local delivery hands an opened document to, and how the hand-off says "later".

Local delivery (gateway/relay/local_delivery.py) keeps every opened document under
DIR/inbox/ID/ and then calls the site's :class:`HandOff` (the service wires the mail
bridge's, gateway/bridges/mail/delivery.py, by ``[delivery] mode``): the relay never
imports a bridge. A hand-off that fails for now raises :class:`DeliveryDeferred` and
the document stays ``received``, to be retried with backoff; one refused for good
raises a :class:`gateway.runtime.errors.Refused`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from envelope.model import SealedHeader
from gateway.runtime.errors import Retry
from gateway.site.context import SiteContext


class DeliveryDeferred(Retry):
    """Local delivery failed for now (mail server down, disk full); retried later."""


class HandOff(Protocol):
    """Hand the opened document in ``folder`` on (a Maildir, a smarthost, or nothing)."""

    async def __call__(
        self, ctx: SiteContext, message_id: str, sealed: SealedHeader, folder: Path
    ) -> None: ...
