"""``valise doctor [--dir DIR] [--json]``: a site's health, one check a line.

Exit codes: 0 when no check failed (warnings included), 1 when any check failed,
3 when DIR is not a readable site folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from config.site import ConfigError
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_MACHINE, emit, site_dir
from gateway.service.doctor import run_checks
from gateway.service.doctor_checks import Status

EXIT_CHECK_FAILED = int(ExitCode.REJECTED)  # a check failed


@click.command("doctor")
@DIR_OPTION
@JSON_MACHINE
@one_line_errors
def doctor(directory: Path | None, as_json: bool) -> None:
    """Check key permissions and expiry, the clock against HQ, the directory, the
    store's durability, the work still to do, and free disk. Exits 1 when a check
    fails.

    The queue rows warn about a delivery deferred now whose message this site took
    longer ago than [relay] warn_deferred_seconds (default 3600), a message sent from
    here forwarded that long ago without its receipt, and a document received here that
    long ago and not delivered (a receipt deferred because its origin has no active
    encryption key, a deferred hand-off, or not opened): each names how many, the
    oldest, its peer and why. Deliveries failed in the last 24 h warn too, naming the
    latest and "valise queue list --state failed". Columns are as wide as their
    content."""
    try:
        checks = asyncio.run(run_checks(site_dir(directory)))
    except ConfigError as exc:
        fail(ExitCode.FILES, str(exc))
    emit(
        [{"check": c.name, "status": c.status.value, "detail": c.detail} for c in checks],
        as_json,
        [("check", "CHECK", 32), ("status", "STATUS", 8), ("detail", "DETAIL", 0)],
    )
    failed = sum(c.status is Status.FAIL for c in checks)
    warned = sum(c.status is Status.WARN for c in checks)
    click.echo(
        f"valise: doctor: {len(checks)} checks, {failed} failed, {warned} warning(s)", err=True
    )
    if failed:
        raise SystemExit(EXIT_CHECK_FAILED)
