"""``valise audit``: verify, list and checkpoint a site's audit log (docs/AUDIT.md).

audit verify [--json]                          walk the chain and the checkpoints
audit list [--since SEQ] [--limit N] [--json]  the entries after SEQ, oldest first
audit checkpoint                               sign the head of the log now
audit witness SITE [--json]                    (HQ) what HQ witnessed of SITE's log

Exit codes of ``audit verify``: 0 the log is intact (entries not yet checkpointed are
reported, not failed), 1 something was changed, removed or reordered, or a checkpoint
does not verify, or the chain is shorter than or forks from what HQ witnessed; 3 DIR is
not a readable site folder. ``audit witness`` exits 1 when HQ recorded a rollback or
fork of SITE's chain or a signature does not verify, 2 when HQ witnessed nothing of SITE.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from crypto.errors import CryptoError
from crypto.recipes import verify
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_MACHINE, emit, with_site
from gateway.proof.audit import (
    checkpoint_now,
    held_directories,
    site_key_history,
    site_verify_keys,
    token_checker,
    verify_store,
)
from gateway.proof.audit_verify import Report, witness_json
from gateway.proof.timestamping import Stamper
from gateway.proof.witness import hub_session, latest_statement
from gateway.proof.witness_format import WitnessError, check_statement
from gateway.site.context import SiteContext
from gateway.store.audit_chain import (
    AuditCheckpoint,
    AuditEntry,
    AuditFormatError,
    Witness,
    canonical_time,
    checkpoint_message,
)
from routing.directory import DirectoryError

EXIT_TAMPERED = int(ExitCode.REJECTED)  # the log, or a checkpoint of it, does not verify
LIST_LIMIT = 100


@click.group("audit")
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
    if r.witness is not None:
        w = r.witness
        lines.append(
            f"witness      {w.witness} saw seq {w.seq} at {canonical_time(w.witnessed_at)}"
        )
    lines += [f"note: {n}" for n in r.notes]
    lines += [f"WARNING: {w}" for w in r.warnings]
    first = r.first
    if first is not None:
        lines.append(f"TAMPERED at seq {first.seq}: {first.kind}: {first.what}")
        lines += [f"  also: seq {f.seq}: {f.kind}: {f.what}" for f in r.findings if f != first]
    else:
        lines.append("ok: the chain and its checkpoints verify")
    return lines


@audit_group.command("verify")
@DIR_OPTION
@JSON_MACHINE
@one_line_errors
def audit_verify(directory: Path | None, as_json: bool) -> None:
    """Walk the whole chain and every checkpoint; report the first entry that was
    changed, removed or reordered. Exits 1 when the log was tampered with."""

    async def go(ctx: SiteContext) -> Report:
        witnessed, note = await latest_statement(ctx)
        report = await verify_store(
            ctx.store,
            site=ctx.here,
            keys=site_verify_keys(ctx),
            token_check=token_checker(
                ctx.config.keys_dir / "ca.crt", ctx.config.tsa.checkpoint_policy
            ),
            history=site_key_history(ctx),
            witnessed=witnessed,
        )
        report.notes.append(note)
        return report

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
@JSON_MACHINE
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
    """Sign the head of the log now with the site's signing key, time-stamped by HQ's
    authority (at a mission: sent to HQ's witness); kept without a token when HQ
    cannot be reached."""

    async def go(ctx: SiteContext) -> AuditCheckpoint | None:
        if ctx.config.is_hub:
            stamper = Stamper(ctx, None)
            return await checkpoint_now(
                ctx.store, site=ctx.here, key=ctx.keys.signing, stamp=stamper.stamp_checkpoint
            )
        async with hub_session(ctx) as session:
            stamper = Stamper(ctx, session)
            return await checkpoint_now(
                ctx.store, site=ctx.here, key=ctx.keys.signing, stamp=stamper.stamp_checkpoint
            )

    cp = with_site(directory, go)
    if cp is None:
        fail(ExitCode.OK, "audit: nothing new to checkpoint")
    click.echo(f"{cp.seq}\t{cp.hash.hex()}")
    stamped = "time-stamped" if cp.token is not None else "NOT time-stamped (HQ unreachable?)"
    click.echo(
        f"valise: audit: checkpoint at seq {cp.seq} signed by {cp.signer}, {stamped}", err=True
    )


@audit_group.command("witness")
@click.argument("site")
@DIR_OPTION
@JSON_MACHINE
@one_line_errors
def audit_witness(site: str, directory: Path | None, as_json: bool) -> None:
    """(HQ) The latest checkpoint of SITE's audit log HQ witnessed, whether both
    signatures verify, and any rollback or fork of SITE's chain HQ refused."""

    async def go(ctx: SiteContext) -> tuple[Witness | None, list[str]]:
        w = await ctx.store.audit_witness(site)
        return w, ([] if w is None else _witness_problems(ctx, w))

    w, problems = with_site(directory, go)
    if w is None:
        fail(ExitCode.USAGE, f"audit: HQ has witnessed no checkpoint of {site}")
    doc = {**witness_json(w), "signature_ok": not problems, "problems": problems}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"site         {w.site}")
        click.echo(f"seq          {w.seq}")
        click.echo(f"hash         {w.hash.hex()}")
        click.echo(f"signed at    {canonical_time(w.at)} by {w.signer} (the site's claim)")
        click.echo(f"witnessed    {canonical_time(w.witnessed_at)} by {w.witness}")
        click.echo(f"signature    {'ok' if not problems else 'FAILED: ' + '; '.join(problems)}")
        if w.conflict:
            click.echo(
                f"CONFLICT     {w.conflict}: {site} sent seq {w.conflict_seq} "
                f"(hash {w.conflict_hash.hex()}) at "
                f"{'' if w.conflict_at is None else canonical_time(w.conflict_at)}"
            )
    if problems or w.conflict:
        raise SystemExit(EXIT_TAMPERED)


def _witness_problems(ctx: SiteContext, w: Witness) -> list[str]:
    """Whether the site's checkpoint signature (under a key of the site some held
    directory lists) and HQ's statement verify."""
    problems = []
    directories = held_directories(ctx)
    keys = {}
    for d in directories:
        try:
            keys.update({k.key_id: k for k, _ in d.site(w.site).signing})
        except DirectoryError:
            continue
    key = keys.get(w.signer)
    try:
        if key is None:
            raise CryptoError(f"key {w.signer} is no signing key of {w.site}")
        verify(key, w.signature, checkpoint_message(w.site, w.seq, w.hash, w.at))
    except (CryptoError, AuditFormatError) as exc:
        problems.append(f"the checkpoint signature of {w.site} does not verify: {exc}")
    try:
        check_statement(w, directories)
    except WitnessError as exc:
        problems.append(str(exc))
    return problems
