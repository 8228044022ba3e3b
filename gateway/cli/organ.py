"""``valise organ add | remove | list``: the organ ids each site serves.

organ add ORGAN_ID --site SITE [--name NAME] [--move]   HQ: SITE serves ORGAN_ID
organ remove ORGAN_ID                                    HQ: no site serves it any more
organ list [--site SITE] [--json]                        any site: from its directory

Rules:
- ``add`` and ``remove`` run at HQ only (exit 2 elsewhere): each publishes a new
  signed directory version under the directory lock (gateway/trust/publish.py), read back
  as a mission will read it before it is written. Nothing is published when the
  change is refused (a bad id or name, an organ another site serves, an organ id that
  is a site id, too many organs, a directory that would be too large) or changes
  nothing (run again, it does nothing and says so).
- An organ served by another site is moved only with ``--move``. ``add`` of an organ
  the site serves already sets its name when ``--name`` is given (its place in the
  list is kept: the first organ is the one the site speaks as).
- A running HQ serves the new version from its next key check (``[keys]
  check_seconds``), and each mission has it from its next directory fetch (``[relay]
  directory_poll_seconds``): no restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from envelope.errors import SchemaError, UsageError
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, with_site
from gateway.cli.record import operator
from gateway.cli.table import Column
from gateway.proof.audit import AuditError
from gateway.site.context import SiteContext
from gateway.store.base import StoreError
from gateway.trust.publish import publish
from routing.directory import Directory, DirectoryError, SiteEntry
from routing.organs import Organ, check_organ_id, check_organ_name

ORGAN_COLUMNS = [
    Column("organ", "ORGAN"),
    Column("site", "SITE"),
    Column("status", "STATUS"),
    Column("name", "NAME", limit=60),
]


@click.group("organ")
def organ_group() -> None:
    """Organs (the organisations named in edXML headers) and the sites serving them."""


def _checked(organ_id: str, name: str | None) -> None:
    try:
        check_organ_id(organ_id)
        if name is not None:
            check_organ_name(name)
    except SchemaError as exc:
        raise UsageError(str(exc)) from None


def _with_organs(d: Directory, site: str, organs: tuple[Organ, ...]) -> Directory:
    """``d`` with ``site``'s organs replaced; same serial (publish gives the new one)."""
    sites = tuple(replace(e, organs=organs) if e.site == site else e for e in d.sites)
    return Directory(d.serial, d.issued, d.hub, sites)


def _added(d: Directory, organ: Organ, site: str, *, move: bool) -> Directory:
    """``d`` with ``site`` serving ``organ`` (``d`` itself if it does so already).
    Raises DirectoryError: an unknown site, or an organ another site serves."""
    entry = d.site(site)
    owner = d.site_for_organ(organ.organ_id)
    if owner is not None and owner != site:
        if not move:
            raise DirectoryError(
                f"organ {organ.organ_id} is served by {owner}: --move to move it to {site}"
            )
        old = d.site(owner)
        kept = tuple(o for o in old.organs if o.organ_id != organ.organ_id)
        d = _with_organs(d, owner, kept)
    mine = {o.organ_id: i for i, o in enumerate(entry.organs)}
    if organ.organ_id in mine:
        if entry.organs[mine[organ.organ_id]] == organ:
            return d
        organs = tuple(organ if o.organ_id == organ.organ_id else o for o in entry.organs)
    else:
        organs = (*entry.organs, organ)
    return _with_organs(d, site, organs)


def _removed(d: Directory, organ_id: str) -> Directory:
    owner = d.site_for_organ(organ_id)
    if owner is None:
        raise DirectoryError(f"no site serves organ {organ_id} in directory serial {d.serial}")
    kept = tuple(o for o in d.site(owner).organs if o.organ_id != organ_id)
    return _with_organs(d, owner, kept)


def _publish(
    ctx: SiteContext, what: str, change: Callable[[Directory, datetime], Directory]
) -> tuple[Directory, bool]:
    """Publish ``change`` at HQ (exit 2 elsewhere). Returns (the directory in force, whether
    it is new). A refused change (DirectoryError, SchemaError) is a usage error."""
    if not ctx.config.is_hub:
        fail(ExitCode.USAGE, f"organ {what} runs at HQ: HQ publishes the directory")
    try:
        directory, new = publish(ctx.config.directory, change, passphrase=ctx.config.key_passphrase)
    except (DirectoryError, SchemaError) as exc:
        raise UsageError(f"{exc}; nothing published") from None
    return directory, new


async def _audit(ctx: SiteContext, directory: Directory, detail: dict[str, str]) -> None:
    from gateway.proof import audit

    try:
        await audit.record(
            ctx.store,
            actor=operator(),
            action="directory.publish",
            subject=str(directory.serial),
            detail=detail,
        )
    except (AuditError, StoreError) as exc:  # published all the same: say so
        click.echo(f"valise: warning: not in the audit log: {exc}", err=True)


@organ_group.command("add")
@click.argument("organ_id")
@click.option("--site", "site", required=True, help="The site that serves ORGAN_ID.")
@click.option("--name", default=None, help="The organ's name (e.g. UBND Tỉnh Nghệ An).")
@click.option("--move", is_flag=True, help="Move ORGAN_ID from the site serving it now.")
@DIR_OPTION
@one_line_errors
def organ_add(
    organ_id: str, site: str, name: str | None, move: bool, directory: Path | None
) -> None:
    """HQ: publish that SITE serves ORGAN_ID (as in edXML's From/To OrganId)."""
    _checked(organ_id, name)

    async def go(ctx: SiteContext) -> tuple[Directory, bool]:
        def change(d: Directory, now: datetime) -> Directory:
            held = next((o for e in d.sites for o in e.organs if o.organ_id == organ_id), None)
            keep = held.name if held is not None else ""
            organ = Organ(organ_id, keep if name is None else name)
            return _added(d, organ, site, move=move)

        published, new = _publish(ctx, "add", change)
        if new:
            await _audit(ctx, published, {"organ": organ_id, "site": site, "action": "add"})
        return published, new

    published, new = with_site(directory, go)
    if new:
        click.echo(f"organ {organ_id} served by {site} (directory serial {published.serial})")
    else:
        click.echo(
            f"organ {organ_id} is served by {site} already (directory serial {published.serial})"
        )


@organ_group.command("remove")
@click.argument("organ_id")
@DIR_OPTION
@one_line_errors
def organ_remove(organ_id: str, directory: Path | None) -> None:
    """HQ: publish that no site serves ORGAN_ID any more."""
    _checked(organ_id, None)

    async def go(ctx: SiteContext) -> tuple[Directory, str | None]:
        owner = ctx.directory.site_for_organ(organ_id)
        published, _ = _publish(ctx, "remove", lambda d, now: _removed(d, organ_id))
        await _audit(ctx, published, {"organ": organ_id, "site": owner or "", "action": "remove"})
        return published, owner

    published, owner = with_site(directory, go)
    was = f" (was {owner})" if owner else ""
    click.echo(f"organ {organ_id} removed{was} (directory serial {published.serial})")


def organ_rows(d: Directory, site: str | None = None) -> list[dict[str, Any]]:
    """One row per organ, in directory order: organ id, site, its status, name."""
    entries: list[SiteEntry] = [d.site(site)] if site is not None else list(d.sites)
    return [
        {
            "organ": o.organ_id,
            "site": e.site,
            "status": "active" if e.active else "disabled",
            "name": o.name,
        }
        for e in entries
        for o in e.organs
    ]


@organ_group.command("list")
@click.option("--site", "site", default=None, help="Only the organs SITE serves.")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def organ_list(site: str | None, directory: Path | None, as_json: bool) -> None:
    """Organs in the directory this site holds, and the site serving each."""

    async def go(ctx: SiteContext) -> list[dict[str, Any]]:
        try:
            return organ_rows(ctx.directory, site)
        except DirectoryError as exc:
            raise UsageError(str(exc)) from None

    rows = with_site(directory, go)
    emit(rows, as_json, ORGAN_COLUMNS)
    if not rows and not as_json:
        click.echo("valise: no organs in the directory", err=True)
