"""``valise evidence``: export a message's evidence bundle, and check one offline.

evidence ID --out DIR [--dir SITE]   (also: evidence export ID --out DIR)
    Write the bundle of message ID held in this site's store to DIR (new or empty).
    Exit 0; 2 if the site holds no such message; 3 if DIR is not empty or a file or
    key cannot be read; 1 if a stored piece is damaged.
evidence verify DIR [--trust directory.pub] [--ca ca.crt] [--json]
    Check a bundle without any store. Exit 0 when no check failed, 1 otherwise (each
    check and its reason on stdout), 3 if DIR cannot be read, 2 for a bad --trust.
    The last line (stderr) names the destinations whose delivery the bundle proves (a
    receipt per destination, format valise-evidence/3 with the earlier copies the
    receipts name; v1 and v2 bundles still verify) and those it does not.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from crypto.errors import KeyFormatError
from crypto.keys import VerifyKey
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, json_option, with_site
from gateway.evidence.export import export_evidence
from gateway.evidence.layout import EvidenceError, OutputNotEmpty, UnknownMessage
from gateway.evidence.verify import FAILED, NotABundle, verify_bundle
from gateway.site.context import SiteContext


class _EvidenceGroup(click.Group):
    """``evidence ID ...`` is ``evidence export ID ...`` (a message id is never a
    subcommand's name)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["export", *args]
        return super().parse_args(ctx, args)


@click.group("evidence", cls=_EvidenceGroup)
def evidence_group() -> None:
    """Evidence bundles: `evidence ID --out DIR` exports one; `evidence verify DIR` checks it."""


@evidence_group.command("export")
@click.argument("message_id")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The bundle folder to create (must be new or empty).",
)
@DIR_OPTION
@json_option("Print what was written as JSON.")
@one_line_errors
def evidence_export(message_id: str, out: Path, directory: Path | None, as_json: bool) -> None:
    """Export the evidence bundle of MESSAGE_ID from this site's store."""

    async def go(ctx: SiteContext) -> Any:
        return await export_evidence(ctx, message_id, out, now=datetime.now(UTC))

    try:
        done = with_site(directory, go)
    except UnknownMessage as exc:
        fail(ExitCode.USAGE, str(exc))
    except OutputNotEmpty as exc:
        fail(ExitCode.FILES, str(exc))
    except EvidenceError as exc:
        fail(ExitCode.REJECTED, str(exc))
    if as_json:
        info = {"out": str(done.out), "id": done.message_id, "files": list(done.files)}
        click.echo(json.dumps({**info, "notes": list(done.notes)}, indent=2))
    else:
        click.echo(str(done.out))
    for note in done.notes:
        click.echo(f"valise: note: {note}", err=True)
    click.echo(
        f"valise: evidence for {message_id}: {len(done.files)} files in {done.out}; "
        f"check with: valise evidence verify {done.out}",
        err=True,
    )


def _read_trust(path: Path) -> VerifyKey:
    try:
        return VerifyKey.from_bytes(base64.b64decode(path.read_bytes().strip(), validate=True))
    except (ValueError, KeyFormatError):
        fail(ExitCode.USAGE, f"{path} is not a base64 Ed25519 key (a directory.pub)")


@evidence_group.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--trust",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="HQ's directory.pub, known independently: the bundle's copy must be it.",
)
@click.option(
    "--ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The HQ site CA certificate, known independently: the bundle's must be it.",
)
@JSON_OPTION
@one_line_errors
def evidence_verify(bundle: Path, trust: Path | None, ca: Path | None, as_json: bool) -> None:
    """Check an evidence bundle offline (no store): exit 0 if no check failed, else 1."""
    pin = _read_trust(trust) if trust is not None else None
    ca_pem = ca.read_bytes() if ca is not None else None
    try:
        result = verify_bundle(bundle, trust=pin, ca_pem=ca_pem)
    except NotABundle as exc:
        fail(ExitCode.FILES, str(exc))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        for c in result.checks:
            status = "FAILED" if c.status == FAILED else c.status
            click.echo(f"{status:<8} {c.name:<20} {c.detail}")
    failed = result.failed
    delivery = _delivery_line(result.destinations)
    if failed:
        first = failed[0]
        fail(
            ExitCode.REJECTED,
            f"evidence for {result.message_id or '?'} does NOT verify: {len(failed)} check(s) "
            f"failed; first: {first.name}: {first.detail}" + (f"; {delivery}" if delivery else ""),
        )
    skipped = sum(1 for c in result.checks if c.status == "skipped")
    click.echo(
        f"valise: evidence for {result.message_id} verifies: "
        f"{len(result.checks) - skipped} checks passed, {skipped} skipped"
        + (f"; {delivery}" if delivery else ""),
        err=True,
    )


def _delivery_line(verdicts: dict[str, str]) -> str:
    """``delivery proved for HQ; not proved for M-HANOI (no receipt) (1 of 2)``; "" for
    a bundle whose envelope did not verify."""
    if not verdicts:
        return ""
    proved = [d for d, v in verdicts.items() if v == "proved"]
    others = [f"{d} ({v})" for d, v in verdicts.items() if v != "proved"]
    text = f"delivery proved for {', '.join(proved) or 'no destination'}"
    if others:
        text += f"; not proved for {', '.join(others)}"
    return f"{text} ({len(proved)} of {len(verdicts)})"
