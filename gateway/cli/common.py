"""What the ``valise`` command modules share: ``--dir`` and ``--json``, the site a
command acts on (``site_dir``, ``with_site``), and how listings are printed (``emit``).

Command modules import this module, gateway/cli/app.py (exit codes, ``fail``,
``one_line_errors``) and the helper modules (table.py, views.py, directory_view.py,
record.py), never one another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from config.settings import CommandEnvironment
from config.site import ConfigError
from gateway.cli.app import ExitCode, fail
from gateway.cli.table import Column, render
from gateway.site.context import SiteContext, load_site
from gateway.trust.enroll import EnrollError
from routing.directory import DirectoryError

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The site folder (default: $VALISE_DIR, else the current folder).",
)


def json_option(help: str | None = None) -> Callable[[FC], FC]:
    """``--json`` (the ``as_json`` flag): every listing has it."""
    return click.option("--json", "as_json", is_flag=True, help=help)


JSON_OPTION = json_option()
# The same, said in ``--help``.
JSON_MACHINE = json_option("Machine-readable output.")


def site_dir(directory: Path | None) -> Path:
    """The site folder: --dir, else $VALISE_DIR, else the current folder."""
    return directory or CommandEnvironment.from_environ().site_dir


def with_site(directory: Path | None, fn: Callable[[SiteContext], Awaitable[T]]) -> T:
    """Run ``fn`` on the site loaded from ``directory`` (exit 3 when it is not a site),
    closing its store after."""

    async def go() -> T:
        try:
            ctx = await load_site(site_dir(directory))
        except (ConfigError, DirectoryError, EnrollError) as exc:
            fail(ExitCode.FILES, str(exc))
        try:
            return await fn(ctx)
        finally:
            await ctx.store.close()

    return asyncio.run(go())


def emit(
    rows: list[dict[str, Any]],
    as_json: bool,
    columns: Sequence[Column | tuple[str, str, int]],
) -> None:
    """Rows as JSON (values as they are), or as a table whose columns are as wide as
    their content and never touch (gateway/cli/table.py; a Column's limit cuts with "…")."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for line in render(rows, [Column(*c) for c in columns]):
        click.echo(line)
