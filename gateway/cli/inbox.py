"""``valise inbox``: documents delivered to this site.

inbox list [--json]                   delivered here, and received but not delivered yet
inbox get MESSAGE_ID --out-dir DIR    copy a delivered document's parts
inbox ack MESSAGE_ID                  mark it taken by its integrator
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import click

from config.site import ConfigError, load_site_config
from envelope.errors import SchemaError, UsageError
from envelope.values import check_message_id
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, site_dir, with_site
from gateway.site.context import SiteContext
from gateway.site.export_dir import ExportDir
from gateway.store.base import InState


@click.group("inbox")
def inbox_group() -> None:
    """Documents delivered to this site."""


@inbox_group.command("list")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def inbox_list(directory: Path | None, as_json: bool) -> None:
    """Documents delivered here, oldest first, and those received but not delivered
    yet (state "received"), with why in NOTE: "receipt deferred: M-HANOI has no
    active encryption key" (the receipt cannot be sealed until the directory lists
    one; the document is delivered with it then), a deferred hand-off to the mailbox,
    or not opened yet."""
    from gateway.cli.views import INBOX_COLUMNS, inbox_rows

    emit(with_site(directory, inbox_rows), as_json, INBOX_COLUMNS)


def _inbox_item(message_id: str, directory: Path | None) -> None:
    """Refuse a MESSAGE_ID that is not one (2: it names a folder under inbox/, never
    one elsewhere) and a --dir that is not a site (3)."""
    try:
        check_message_id(message_id)
    except SchemaError as exc:
        raise UsageError(str(exc)) from None
    try:
        load_site_config(site_dir(directory))
    except ConfigError as exc:
        fail(ExitCode.FILES, str(exc))


@inbox_group.command("get")
@click.argument("message_id")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@DIR_OPTION
@one_line_errors
def inbox_get(message_id: str, out_dir: Path, directory: Path | None) -> None:
    """Copy a delivered document's parts into OUT-DIR."""
    _inbox_item(message_id, directory)
    src = site_dir(directory) / "inbox" / message_id
    if not src.is_dir():
        fail(ExitCode.USAGE, f"no delivered document {message_id}")
    # Part names come from the remote site and out_dir may be shared: each file is
    # created new, never through a planted link (gateway/site/export_dir.py).
    with ExportDir(out_dir) as out:
        written = []
        for f in sorted(src.iterdir()):
            if f.name != ".valise.json":
                with f.open("rb") as part, out.create(f.name) as copy:
                    shutil.copyfileobj(part, copy)
                written.append(out.path / f.name)
    for path in written:
        click.echo(str(path))


@inbox_group.command("ack")
@click.argument("message_id")
@DIR_OPTION
@one_line_errors
def inbox_ack(message_id: str, directory: Path | None) -> None:
    """Mark a delivered document as taken by its integrator."""
    _inbox_item(message_id, directory)
    if not (site_dir(directory) / "inbox" / message_id).is_dir():
        fail(ExitCode.USAGE, f"no delivered document {message_id}")

    async def go(ctx: SiteContext) -> None:
        await ctx.store.inbound_set(
            message_id, InState.ACKED, reason="operator ack", now=datetime.now(UTC)
        )

    with_site(directory, go)
