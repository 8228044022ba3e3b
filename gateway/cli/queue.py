"""``valise queue``: the outbound queue, read like mailq / postsuper / qshape.

queue list  [--all] [--peer P] [--state S] [--json]   what is still to do (mailq)
queue show  ID [--json]                       a message's deliveries, destinations, history
queue hold|release|retry ID ... [--reason R]  postsuper -h / -H / -r
queue delete ID ... --yes                     postsuper -d (keeps the history)
queue shape [--messages] [--json]             outstanding destinations by next hop and age
queue reseal ID ... | --all [--dry-run]       re-seal mail sealed to a revoked key
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from envelope.values import format_time
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, with_site
from gateway.cli.table import Column, printable, render
from gateway.relay.circular_status import message_status, status_json
from gateway.relay.key_wait import waiting_messages
from gateway.relay.queue_shape import BUCKETS, shape_rows
from gateway.relay.reseal import ResealResult, candidates, reseal_message
from gateway.site.context import SiteContext
from gateway.store.base import OutState

# The lines of ``queue show``.
SHOW_DELIVERY = [
    Column("to", ""),
    Column("state", ""),
    Column("tries", ""),
    Column("next", ""),
    Column("reason", ""),
]
SHOW_HISTORY = [Column("at", ""), Column("state", ""), Column("peer", ""), Column("reason", "")]
# One line per final destination (issue 11), between the deliveries and the history.
SHOW_DESTINATION = [
    Column("dest", ""),
    Column("state", ""),
    Column("via", ""),
    Column("receipt", ""),
    Column("reason", ""),
]


def _destination_lines(dests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``dest M-HANOI  forwarded  via HQ  receipt -  <reason>`` per destination."""
    rows = []
    for d in dests:
        receipt = d["receipt"]
        digest = (receipt or {}).get("sha256")
        said = "receipt -"
        if receipt is not None:
            said = f"receipt {receipt['at']}" + (f" sha256 {digest[:16]}…" if digest else "")
        rows.append(
            {
                "dest": f"dest {d['site']}",
                "state": d["state"],
                "via": f"via {d['via'] or '(here)'}",
                "receipt": said,
                "reason": d["reason"],
            }
        )
    return rows


@click.group("queue")
def queue_group() -> None:
    """The outbound queue, like mailq."""


@queue_group.command("list")
@DIR_OPTION
@JSON_OPTION
@click.option("--all", "every", is_flag=True, help="Every delivery, done ones included.")
@click.option("--peer", default=None, help="Only deliveries to this next hop.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in OutState]),
    default=None,
    help="Only deliveries in this state, done or not.",
)
@one_line_errors
def queue_list(
    directory: Path | None, as_json: bool, every: bool, peer: str | None, state: str | None
) -> None:
    """What is still to do, one delivery a line (like mailq): every delivery not yet
    delivered (queued, sending, deferred, held, failed: held and failed ones wait for
    the operator), and each message sent from here that is forwarded but still
    awaiting its receipt. Done here, and shown only with --all: delivered ones, and
    a message relayed for another site once forwarded on. --json gives the same rows
    with reasons whole (the table cuts them with "…"). Documents received here and not
    delivered yet (a receipt deferred) are named on stderr: valise inbox list."""
    from gateway.cli.views import QUEUE_COLUMNS, queue_rows, received_summary

    async def go(ctx: SiteContext) -> tuple[list[dict[str, Any]], str | None]:
        rows = await queue_rows(ctx, every=every, peer=peer, state=state)
        return rows, await received_summary(ctx)

    rows, waiting = with_site(directory, go)
    emit(rows, as_json, QUEUE_COLUMNS)
    if not rows and not every and state is None and not as_json:
        click.echo("valise: nothing to do (--all shows what is done)", err=True)
    if waiting is not None:
        click.echo(f"valise: {printable(waiting)}", err=True)


def _operator(action: str, ids: tuple[str, ...], directory: Path | None, reason: str) -> None:
    async def go(ctx: SiteContext) -> dict[str, int]:
        fn = getattr(ctx.store, action)
        now = datetime.now(UTC)
        # Released, a message waiting for a destination's key would go out with a stanza
        # nobody can open (gateway/relay/key_wait.py): the key watcher sends it once sealed.
        waiting = set(await waiting_messages(ctx)) if action == "release" else set()
        for mid in sorted(waiting & set(ids)):
            click.echo(f"{mid}	kept	waiting for a destination's encryption key", err=True)
        return {
            mid: 0 if mid in waiting else await fn(mid, now=now, reason=f"operator: {reason}")
            for mid in ids
        }

    counts = with_site(directory, go)
    for mid, n in counts.items():
        click.echo(f"{mid}\t{action}\t{n} deliver{'y' if n == 1 else 'ies'}")
    if not any(counts.values()):
        fail(ExitCode.USAGE, f"nothing to {action}: no matching deliveries")


@queue_group.command("show")
@click.argument("message_id")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def queue_show(message_id: str, directory: Path | None, as_json: bool) -> None:
    """One message: its deliveries (one per next hop), its final destinations (state,
    next hop, receipt time and digest, reason: what ``valise status`` shows) and its
    whole history."""

    async def go(ctx: SiteContext) -> dict[str, Any]:
        entries = [q for q in await ctx.store.queue() if q.message_id == message_id]
        history = await ctx.store.history(message_id)
        ms = await message_status(ctx.store, message_id)
        per_site = status_json(ms) if ms is not None and ms.total else {}
        return {
            "id": message_id,
            "summary": per_site.get("summary"),
            "destinations": per_site.get("destinations", []),
            "deliveries": [
                {
                    "peer": q.peer,
                    "state": q.state,
                    "attempts": q.attempts,
                    "next_attempt": format_time(q.next_attempt) if q.next_attempt else None,
                    "reason": q.last_reason,
                    "size": q.size,
                    "expires": format_time(q.expires),
                }
                for q in entries
            ],
            "history": [
                {"at": t.at.isoformat(), "peer": t.peer, "state": t.state, "reason": t.reason}
                for t in history
            ],
        }

    info = with_site(directory, go)
    if not info["history"]:
        fail(ExitCode.USAGE, f"no message {message_id} at this site")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(printable(message_id + (f"  {info['summary']}" if info["summary"] else "")))
    # Reasons may come from a peer (a refusal): shown through gateway/cli/table.py.
    deliveries = [
        {
            **d,
            "to": f"to {d['peer']}",
            "tries": f"tries {d['attempts']}",
            "next": f"next {d['next_attempt'] or '-'}",
        }
        for d in info["deliveries"]
    ]
    for line in render(deliveries, SHOW_DELIVERY)[1:]:
        click.echo(f"  {line}")
    for line in render(_destination_lines(info["destinations"]), SHOW_DESTINATION)[1:]:
        click.echo(f"  {line}")
    for line in render(info["history"], SHOW_HISTORY)[1:]:
        click.echo(f"  {line}")


@queue_group.command("hold")
@click.argument("ids", nargs=-1, required=True)
@click.option("--reason", default="held")
@DIR_OPTION
@one_line_errors
def queue_hold(ids: tuple[str, ...], reason: str, directory: Path | None) -> None:
    """Stop delivery attempts for messages (postsuper -h)."""
    _operator("hold", ids, directory, reason)


@queue_group.command("release")
@click.argument("ids", nargs=-1, required=True)
@click.option("--reason", default="released")
@DIR_OPTION
@one_line_errors
def queue_release(ids: tuple[str, ...], reason: str, directory: Path | None) -> None:
    """Release held messages (postsuper -H)."""
    _operator("release", ids, directory, reason)


@queue_group.command("retry")
@click.argument("ids", nargs=-1, required=True)
@click.option("--reason", default="retry now")
@DIR_OPTION
@one_line_errors
def queue_retry(ids: tuple[str, ...], reason: str, directory: Path | None) -> None:
    """Retry deferred or failed deliveries now (postsuper -r)."""
    _operator("retry", ids, directory, reason)


@queue_group.command("delete")
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Confirm: the envelope is removed (history is kept).")
@click.option("--reason", default="deleted")
@DIR_OPTION
@one_line_errors
def queue_delete(ids: tuple[str, ...], yes: bool, reason: str, directory: Path | None) -> None:
    """Delete messages from the queue (postsuper -d). Needs --yes."""
    if not yes:
        fail(ExitCode.USAGE, "queue delete removes envelopes for good: add --yes")
    _operator("delete", ids, directory, reason)


@queue_group.command("reseal")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every message sent from here to a stale key.")
@click.option(
    "--dry-run",
    is_flag=True,
    help='Print "would re-seal N" and each message it would re-seal; change nothing.',
)
@DIR_OPTION
@one_line_errors
def queue_reseal(
    message_ids: tuple[str, ...], every: bool, dry_run: bool, directory: Path | None
) -> None:
    """Seal again, to the destinations' keys in force, messages sealed here to a key
    since revoked or retired, and sign again with our current signing key messages
    signed here with one since revoked or retired, even those a peer refused for it
    (gateway/relay/reseal.py); they are then sent again."""
    if bool(message_ids) == every:
        fail(ExitCode.USAGE, "give message ids or --all")

    async def go(ctx: SiteContext) -> list[ResealResult]:
        ids = list(message_ids) or await candidates(ctx)
        now = datetime.now(UTC)
        return [await reseal_message(ctx, mid, now=now, dry_run=dry_run) for mid in ids]

    results = with_site(directory, go)
    if dry_run:
        _dry_run_report(results, bool(message_ids))
        return
    for r in results:
        click.echo(f"{r.message_id}\t{'resealed' if r.done else 'skipped'}\t{r.detail}")
    if not results:
        click.echo("nothing to re-seal: no message sent from here waits on a stale key")
    if message_ids and not any(r.done for r in results):
        fail(ExitCode.USAGE, "nothing re-sealed")


def _dry_run_report(results: list[ResealResult], named: bool) -> None:
    """``would re-seal N``, then one line per message: ``would`` for those a real run
    re-seals (or re-signs), ``skipped`` with why for the others. Exits as the real run
    would: 2 when messages were named and none would be re-sealed."""
    would = [r for r in results if r.would]
    click.echo(f"would re-seal {len(would)}")
    for r in results:
        click.echo(f"{r.message_id}\t{'would' if r.would else 'skipped'}\t{r.detail}")
    if not results:
        click.echo("nothing to re-seal: no message sent from here waits on a stale key")
    if named and not would:
        fail(ExitCode.USAGE, "nothing would be re-sealed")


@queue_group.command("shape")
@DIR_OPTION
@click.option(
    "--messages",
    is_flag=True,
    help="Count undelivered deliveries (one per message and next hop), as before circulars.",
)
@JSON_OPTION
@one_line_errors
def queue_shape(directory: Path | None, messages: bool, as_json: bool) -> None:
    """Outstanding destinations by next hop and age in minutes (like qshape): each final
    destination still without its receipt or failure counts once under the next hop it
    goes through, a forwarded one included (a circular to 97 missions through HQ with 2
    still out counts 2). Mail without destination rows here counts one per undelivered
    delivery. --messages counts undelivered deliveries instead, whatever their
    destinations."""

    async def go(ctx: SiteContext) -> list[dict[str, Any]]:
        return shape_rows(await ctx.store.queue(), datetime.now(UTC), messages=messages)

    rows = with_site(directory, go)
    columns = [("peer", "NEXT HOP", 12), ("T", "T", 6)] + [(b, b, 6) for b in BUCKETS]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    total: Counter[str] = Counter()
    for r in rows:
        total.update({k: v for k, v in r.items() if k != "peer"})
    emit([{"peer": "TOTAL", **dict(total)}, *rows], False, columns)
