"""What ``valise queue list`` and ``inbox list`` show, read from a site's store, inbox
folder and directory (the click commands are in gateway/cli/queue.py and inbox.py;
where a message received here stands, for ``status``, is gateway/relay/inbound_status.py).

Rules:
- ``queue list`` shows what is still to do by default (Store.queue ``todo``): every
  delivery not delivered, held and failed ones included (the operator's to release,
  retry, re-seal or delete), and a message sent from here forwarded but awaiting its
  receipt. A relayed message forwarded on is done here, as is a delivered one: ``--all``
  shows them too. ``--state`` shows the deliveries in that state, done or not.
- A row is a delivery to a next hop; DESTS counts the final destinations routed
  through it, open/total (``1/2``: one of the two still awaits its receipt or its
  failure). Blank for mail with no destination rows here (a receipt, pre-v11 relays).
- A document received here and not delivered yet is shown with why (gateway/relay/waiting.py):
  above all a receipt deferred for want of the origin's encryption key.
- JSON rows carry the values whole; the text tables cut only the long free-text
  columns (reasons, subjects, destination lists) with "…", never an id.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from envelope.receipt import RECEIPT_CLASS
from envelope.values import format_time
from gateway.cli.table import Column
from gateway.relay.inbound_status import inbox_folder
from gateway.relay.waiting import RECEIPT_DEFERRED, waiting_reason
from gateway.site.context import SiteContext
from gateway.store.base import InState

# The most inbound items ``inbox list`` reads (oldest first).
INBOX_LIMIT = 1000

QUEUE_COLUMNS = [
    Column("id", "ID"),
    Column("peer", "NEXT HOP"),
    Column("state", "STATE"),
    Column("attempts", "TRIES"),
    Column("dests", "DESTS"),
    Column("size", "SIZE"),
    Column("to", "TO", limit=24),
    Column("reason", "REASON", limit=60),
]

INBOX_COLUMNS = [
    Column("id", "ID"),
    Column("from", "FROM"),
    Column("state", "STATE"),
    Column("received", "RECEIVED"),
    Column("parts", "PARTS"),
    Column("kind", "KIND"),
    Column("subject", "SUBJECT", limit=40),
    Column("note", "NOTE"),
]


async def queue_rows(
    ctx: SiteContext, *, every: bool, peer: str | None, state: str | None
) -> list[dict[str, Any]]:
    entries = await ctx.store.queue(peer=peer, state=state, todo=not every and state is None)
    return [
        {
            "id": q.message_id,
            "peer": q.peer,
            "state": q.state,
            "attempts": q.attempts,
            # open/total destinations routed through this hop (issue 11); "" without rows
            "dests": f"{q.dest_open}/{q.dest_total}" if q.dest_total else "",
            "size": q.size,
            "origin": q.origin,
            "to": ",".join(q.destinations),
            "reason": q.last_reason,
            "updated": format_time(q.updated) if q.updated else None,
        }
        for q in entries
    ]


async def inbox_rows(ctx: SiteContext) -> list[dict[str, Any]]:
    """Documents delivered here, and those received and not delivered yet with why
    (``note``); receipts for mail sent from here are not listed."""
    rows = []
    for item in await ctx.store.inbox(limit=INBOX_LIMIT):
        folder = inbox_folder(ctx, item.message_id)
        received = item.state == InState.RECEIVED.value
        opened = folder.exists()
        if not received and not opened:
            continue  # a receipt, or a document refused here (acked with its reason)
        if item.doc_class == RECEIPT_CLASS:
            continue  # a receipt for mail sent from here, being checked
        meta = _meta(folder) if opened else None
        rows.append(
            {
                "id": item.message_id,
                "from": item.origin,
                "state": item.state,
                "received": format_time(item.received),
                "kind": _kind(folder, meta),
                "subject": (meta or {}).get("subject") or "",
                "parts": len(meta["parts"]) if meta else None,
                "note": (
                    waiting_reason(item.origin, item.doc_class, ctx.directory, opened=opened)
                    if received
                    else ""
                ),
            }
        )
    return rows


def _kind(folder: Path, meta: dict[str, Any] | None) -> str:
    """The edXML kind (new, status, revocation, ...) its kept header gives, else ""."""
    from gateway.bridges.edxml.inbox import read_info

    info = read_info(folder, meta) if meta is not None else None
    return info.kind if info is not None else ""


def _meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / ".valise.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("parts"), list) else None


async def received_summary(ctx: SiteContext) -> str | None:
    """One line on the documents received here and not delivered yet (for ``queue
    list``, whose rows are deliveries), None if there are none."""
    waiting = [r for r in await inbox_rows(ctx) if r["state"] == InState.RECEIVED.value]
    if not waiting:
        return None
    deferred = Counter(
        r["note"].removeprefix(f"{RECEIPT_DEFERRED}: ")
        for r in waiting
        if r["note"].startswith(RECEIPT_DEFERRED)
    )
    line = f"{len(waiting)} document(s) received here not delivered yet"
    if deferred:
        why, n = deferred.most_common(1)[0]
        line += f", {sum(deferred.values())} with their receipt deferred ({n}: {why})"
    return f"{line}: valise inbox list"
