"""``valise send`` and ``valise status``: a document sent from this site, and where any
message this site knows of stands.

send --to SITE ... FILE ...   seal FILES for the sites and queue them; prints the id
status MESSAGE_ID [--json]    its state per destination, here, its history
"""

from __future__ import annotations

import json
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from envelope.values import Priority, format_time
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, with_site
from gateway.cli.table import Column, printable, render
from gateway.site.context import SiteContext

# The history lines of ``valise status``.
STATUS_COLUMNS = [
    Column("at", "AT"),
    Column("state", "STATE"),
    Column("peer", "PEER"),
    Column("reason", "REASON"),
]


@click.command("send")
@click.option("--to", "to", required=True, multiple=True)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option("--class", "doc_class", default="document", show_default=True)
@click.option("--subject", default=None)
@click.option("--priority", type=click.Choice([p.value for p in Priority]), default="routine")
@DIR_OPTION
@one_line_errors
def send(
    to: tuple[str, ...],
    files: tuple[Path, ...],
    doc_class: str,
    subject: str | None,
    priority: str,
    directory: Path | None,
) -> None:
    """Seal FILES for the --to sites and queue them; prints the message id.

    A site with no active encryption key yet (its key was revoked and the
    replacement is not published) does not stop the send: the document is queued,
    held, and sealed to the new key by the running site once the directory has it.
    Exit codes: 0 queued (also when waiting for a key; a notice on stderr), 2 usage
    (unknown site, bad option), 3 files, 75 the store is busy or unreachable:
    nothing was queued, try again (docs/CLI.md)."""
    from gateway.relay.key_wait import keyless_destinations, waiting_notice
    from gateway.relay.outbox import Document, send_documents
    from gateway.store.base import StoreError

    documents = [
        Document(
            f.name, mimetypes.guess_type(f.name)[0] or "application/octet-stream", f.read_bytes()
        )
        for f in files
    ]

    async def go(ctx: SiteContext) -> tuple[str, list[str]]:
        mid = await send_documents(
            ctx,
            to,
            documents,
            now=datetime.now(UTC),
            subject=subject,
            priority=Priority(priority),
            doc_class=doc_class,
        )
        # The same directory the send used (this process reads it once): who waits.
        return mid, keyless_destinations(ctx.directory, to)

    try:
        mid, waiting = with_site(directory, go)
    except StoreError as exc:
        fail(ExitCode.TEMPFAIL, f"nothing queued, try again: {exc}")
    click.echo(mid)
    if waiting:
        click.echo(f"valise: {waiting_notice(waiting)}", err=True)


@click.command("status")
@click.argument("message_id")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def status(message_id: str, directory: Path | None, as_json: bool) -> None:
    """A message's history and receipt. For a document received here, "here" is its
    state at this site, and why it is not delivered yet if it is still "received"
    (for instance "receipt deferred: M-HANOI has no active encryption key": it is
    delivered, with its receipt, once the directory lists one)."""
    from gateway.relay.circular_status import message_status, status_json
    from gateway.relay.inbound_status import inbound_status

    async def go(ctx: SiteContext) -> dict[str, Any]:
        history = await ctx.store.history(message_id)
        ms = await message_status(ctx.store, message_id)
        per_site: dict[str, Any] = {}
        if ms is not None and ms.total:
            per_site = status_json(ms)
        else:  # no destination rows here: a receipt envelope, mail received here
            per_site = {"delivered": await ctx.store.receipt(message_id) is not None}
        return {
            "id": message_id,
            **per_site,
            "here": await inbound_status(ctx, message_id),
            "history": [
                {
                    "at": format_time(t.at),
                    "peer": t.peer or "",
                    "state": t.state,
                    "reason": t.reason,
                }
                for t in history
            ],
        }

    info = with_site(directory, go)
    if not info["history"]:
        fail(ExitCode.USAGE, f"no message {message_id} at this site")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    state = "delivered (receipt verified)" if info["delivered"] else "not delivered yet"
    if info.get("of"):
        state = info["summary"]
    if info["here"] is not None:
        here = info["here"]
        mine = f"{here['state']} here" + (f" — {here['note']}" if here["note"] else "")
        state = f"{mine}; {state}" if info.get("of") else mine  # a hub relays it too
    click.echo(printable(f"{message_id}  {state}"))
    if info.get("of"):
        for line in render(_destination_rows(info["destinations"]), DESTINATION_COLUMNS):
            click.echo(f"  {line}")
    for line in render(info["history"], STATUS_COLUMNS)[1:]:
        click.echo(f"  {line}")


DESTINATION_COLUMNS = [
    Column("site", "SITE"),
    Column("state", "STATE"),
    Column("via", "VIA"),
    Column("attempts", "TRIES"),
    Column("receipt_at", "RECEIPT AT"),
    Column("sha256", "RECEIPT SHA-256"),
    Column("reason", "REASON", limit=60),
]


def _destination_rows(dests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in dests:
        receipt = d["receipt"] or {}
        digest = receipt.get("sha256")
        rows.append(
            {
                **d,
                "via": d["via"] or "(here)",
                "receipt_at": receipt.get("at"),
                "sha256": f"{digest[:16]}…" if digest else None,
            }
        )
    return rows
