"""``valise audit``: verify, list and checkpoint a site's audit log (docs/AUDIT.md).

audit verify [--json]                          walk the chain and the checkpoints
audit list [--since SEQ] [--limit N] [--json]  the entries after SEQ, oldest first
audit checkpoint                               sign the head of the log now

Exit codes of ``audit verify``: 0 the log is intact (entries not yet checkpointed are
reported, not failed), 1 something was changed, removed or reordered, or a checkpoint
does not verify; 3 DIR is not a readable site folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.audit import checkpoint_now, site_verify_keys, token_checker, verify_store
from gateway.audit_verify import Report
from gateway.cli import _fail, main, one_line_errors
from gateway.cli_site import DIR_OPTION, emit, with_site
from gateway.site import SiteContext
from gateway.store.audit_chain import AuditCheckpoint, AuditEntry, canonical_time

EXIT_TAMPERED = 1
LIST_LIMIT = 100


@main.group("audit")
def audit_group() -> None:
    """The site's tamper-evident audit log."""


def _report_lines(r: Report) -> list[str]:
    lines = [
        f"entries      {r.entries} (last seq {r.last_seq})",
        f"checkpoints  {r.checkpoints_verified} of {r.checkpoints} verified"
        + (f", last at seq {r.last_checkpoint}" if r.last_checkpoint else ""),
    ]
    if r.unchecked is not None:
        a, b = r.unchecked
        lines.append(f"not yet checkpointed: entries {a}..{b}")
    lines += [f"note: {n}" for n in r.notes]
    first = r.first
    if first is not None:
        lines.append(f"TAMPERED at seq {first.seq}: {first.kind}: {first.what}")
        lines += [f"  also: seq {f.seq}: {f.kind}: {f.what}" for f in r.findings if f != first]
    else:
        lines.append("ok: the chain and its checkpoints verify")
    return lines


@audit_group.command("verify")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def audit_verify(directory: Path | None, as_json: bool) -> None:
    """Walk the whole chain and every checkpoint; report the first entry that was
    changed, removed or reordered. Exits 1 when the log was tampered with."""

    async def go(ctx: SiteContext) -> Report:
        return await verify_store(
            ctx.store,
            site=ctx.here,
            keys=site_verify_keys(ctx),
            token_check=token_checker(ctx.config.keys_dir / "ca.crt"),
        )

    report = with_site(directory, go)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for line in _report_lines(report):
            click.echo(line)
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


def _entry_json(e: AuditEntry) -> dict[str, object]:
    return {
        "seq": e.seq,
        "at": canonical_time(e.at),
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "result": e.result,
        "detail": json.loads(e.detail),
        "prev": e.prev.hex(),
        "hash": e.hash.hex(),
    }


@audit_group.command("list")
@DIR_OPTION
@click.option("--since", type=click.IntRange(0), default=0, help="Entries after this seq.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=LIST_LIMIT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def audit_list(directory: Path | None, since: int, limit: int, as_json: bool) -> None:
    """The entries after SEQ, oldest first (who, what, when, result)."""

    async def go(ctx: SiteContext) -> list[AuditEntry]:
        return await ctx.store.audit_entries(after=since, limit=limit)

    rows = [_entry_json(e) for e in with_site(directory, go)]
    emit(
        rows,
        as_json,
        [
            ("seq", "SEQ", 8),
            ("at", "AT", 29),
            ("actor", "ACTOR", 20),
            ("action", "ACTION", 22),
            ("result", "RESULT", 10),
            ("subject", "SUBJECT", 0),
        ],
    )


@audit_group.command("checkpoint")
@DIR_OPTION
@one_line_errors
def audit_checkpoint(directory: Path | None) -> None:
    """Sign the head of the log now with the site's signing key (no time-stamp)."""

    async def go(ctx: SiteContext) -> AuditCheckpoint | None:
        return await checkpoint_now(ctx.store, site=ctx.here, key=ctx.keys.signing)

    cp = with_site(directory, go)
    if cp is None:
        _fail(0, "audit: nothing new to checkpoint")
        return
    click.echo(f"{cp.seq}\t{cp.hash.hex()}")
    click.echo(f"valise: audit: checkpoint at seq {cp.seq} signed by {cp.signer}", err=True)
