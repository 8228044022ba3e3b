"""The integrators' bridges: the HTTP API and the SMTP bridge, and local delivery.

A bridge is started by ``valise serve`` beside the channel. Each implements
:class:`Bridge`; :func:`make_bridges` builds the enabled ones from the config.
Bridges hand documents to :func:`gateway.relay.outbox.send_documents` (sealed and
durably queued before the bridge answers) and learn what happens to them through
:class:`gateway.runtime.events.EventBus`.
"""

from __future__ import annotations

from typing import Protocol

from config.site import enabled
from gateway.runtime.events import EventBus
from gateway.site.context import SiteContext


class Bridge(Protocol):
    name: str

    async def start(self) -> None:
        """Bind and serve; afterwards ``port`` is the bound port."""
        ...

    async def stop(self) -> None: ...

    @property
    def port(self) -> int: ...


def make_bridges(ctx: SiteContext, events: EventBus) -> list[Bridge]:
    """The bridges enabled in ``ctx.config`` (imports are lazy: a bridge's dependencies
    are loaded only when it is switched on)."""
    bridges: list[Bridge] = []
    if enabled(ctx.config.http.enabled):
        from gateway.bridges.http.api import HttpBridge

        bridges.append(HttpBridge(ctx, events))
    if enabled(ctx.config.smtp.enabled):
        from gateway.bridges.smtp.bridge import SmtpBridge

        bridges.append(SmtpBridge(ctx, events))
    return bridges
