"""Where a message received here stands at this site as its destination, and why it is
not delivered yet when it is still ``received`` (gateway/relay/waiting.py): for
``valise status`` and the other readers of a site's inbound state.

Rules:
- The state is the latest inbound event of the message's history (those without a
  peer): received, available, acked; a ``deleted`` one, or none, means the message is
  not (or no longer) held here as a destination.
- While ``received``, the note is ``waiting_reason`` computed as local delivery would
  find it: from the message's route, the directory in force, and whether its inbox
  folder (``inbox_folder``) is written yet.
"""

from __future__ import annotations

from pathlib import Path

from gateway.relay.waiting import waiting_reason
from gateway.site.context import SiteContext
from gateway.store.base import InState

# Inbound states in a message's history (a 'deleted' one removes the item).
INBOUND_EVENTS = (*(s.value for s in InState), "deleted")


def inbox_folder(ctx: SiteContext, message_id: str) -> Path:
    """The folder local delivery writes a delivered document's parts in."""
    return ctx.config.directory / "inbox" / message_id


async def inbound_status(ctx: SiteContext, message_id: str) -> dict[str, str] | None:
    """The message's state here as a destination ({"state", "note"}), None if it was
    not received here (or was deleted)."""
    events = [t for t in await ctx.store.history(message_id) if t.peer is None]
    last = next((t for t in reversed(events) if t.state in INBOUND_EVENTS), None)
    if last is None or last.state == "deleted":
        return None
    if last.state != InState.RECEIVED.value:
        return {"state": last.state, "note": ""}
    route = (await ctx.store.message_routes([message_id])).get(message_id)
    if route is None:
        return None
    opened = inbox_folder(ctx, message_id).exists()
    note = waiting_reason(route.origin, route.doc_class, ctx.directory, opened=opened)
    return {"state": last.state, "note": note}
