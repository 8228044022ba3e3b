"""``valise directory``: the signed site directory.

directory show [--xml | --json]   the directory in force, its sites and their keys
directory status [--json]         HQ: which version each site has fetched, and when
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from envelope.errors import UsageError
from envelope.values import format_time
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_MACHINE, JSON_OPTION, emit, with_site
from gateway.site.context import SiteContext


@click.group("directory")
def directory_group() -> None:
    """The signed site directory."""


@directory_group.command("show")
@DIR_OPTION
@click.option("--xml", "as_xml", is_flag=True, help="Print the signed directory itself.")
@JSON_MACHINE
@one_line_errors
def directory_show(directory: Path | None, as_xml: bool, as_json: bool) -> None:
    """The directory in force: serial, issue time, hub, the key that signed it, and
    each site with its endpoint and keys (kind, id, state; the directory holds no
    dates but its issue time)."""
    from gateway.cli.directory_view import directory_lines, directory_summary

    async def go(ctx: SiteContext) -> tuple[bytes, dict[str, Any]]:
        return ctx.directory.raw, directory_summary(ctx.directory, signed_by=ctx.trust.key_id)

    if as_xml and as_json:
        raise UsageError("--xml or --json, not both")
    raw, summary = with_site(directory, go)
    if as_xml:
        click.echo(raw.decode())
    elif as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo("\n".join(directory_lines(summary)))


@directory_group.command("status")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def directory_status(directory: Path | None, as_json: bool) -> None:
    """HQ: which directory version each site has fetched, and when."""

    async def go(ctx: SiteContext) -> list[dict[str, Any]]:
        if not ctx.config.is_hub:
            fail(ExitCode.USAGE, "directory status runs at HQ")
        fetched = {f.site: f for f in await ctx.store.directory_fetches()}
        now = datetime.now(UTC)
        rows = []
        for entry in ctx.directory.sites:
            f = fetched.get(entry.site)
            if entry.site == ctx.here:
                rows.append(
                    _status_row(
                        entry.site, ctx.directory.serial, ctx.directory.serial, now, "publisher"
                    )
                )
                continue
            rows.append(
                _status_row(
                    entry.site,
                    ctx.directory.serial,
                    f.serial if f else None,
                    f.at if f else None,
                    None,
                )
            )
        return rows

    rows = with_site(directory, go)
    emit(
        rows,
        as_json,
        [
            ("site", "SITE", 14),
            ("fetched", "FETCHED", 9),
            ("current", "CURRENT", 9),
            ("behind", "BEHIND", 8),
            ("at", "AT", 22),
            ("status", "STATUS", 10),
        ],
    )


def _status_row(
    site: str, current: int, fetched: int | None, at: datetime | None, status: str | None
) -> dict[str, Any]:
    behind = None if fetched is None else current - fetched
    if status is None:
        status = "never" if fetched is None else ("current" if behind == 0 else "behind")
    return {
        "site": site,
        "fetched": fetched,
        "current": current,
        "behind": behind,
        "at": format_time(at) if at else None,
        "status": status,
    }
