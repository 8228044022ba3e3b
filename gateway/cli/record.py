"""Operator commands in the audit log: the ``valise`` group records each site command.

Rules:
- A command is recorded when it acts on a site: it takes ``--dir`` (the ``directory``
  parameter) and is not an offline tool (``keys generate``). ``--help`` is not recorded.
- The entry is written once the command has finished: actor ``operator:<unix user>``,
  action ``cli.<command path joined by dots>``, subject the site folder, result ``ok`` or
  ``error: <exit code>``, detail the arguments as typed (``args``, JSON), with the value
  of every option whose name says it is secret (token, password, passphrase, secret)
  replaced by ``***``, and when it started.
- When the folder is not a site (no valise.toml: ``valise init`` failed, a typo) nothing
  is recorded; when the store cannot be reached the command's own result stands and a
  warning goes to stderr. Recording never changes a command's output or exit code.
- Recording also tells the store its site id (``Store.audit_identify``): the actor of
  the automatic entries from then on.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from config.settings import CommandEnvironment
from config.site import ConfigError, load_site_config
from gateway.proof.audit import AuditError, record
from gateway.site.context import open_store
from gateway.store.base import StoreError

OFFLINE: frozenset[tuple[str, ...]] = frozenset({("keys", "generate")})
SECRET_NAME = re.compile(r"token|password|passphrase|secret", re.IGNORECASE)
REDACTED = "***"
_ARGS = "valise.audit.args"


def operator() -> str:
    """``operator:<unix user>`` (the uid when there is no user name)."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"operator:uid-{os.getuid()}"


def resolve(group: click.Group, ctx: click.Context, args: list[str]) -> tuple[list[str], Any]:
    """The command path the arguments name, and the leaf command (None if unknown)."""
    path: list[str] = []
    cmd: Any = group
    rest = list(args)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(ctx, rest[0])
        if sub is None:
            return path, None
        path.append(rest.pop(0))
        cmd = sub
    return path, None if isinstance(cmd, click.Group) else cmd


def redact(command: click.Command, args: list[str]) -> list[str]:
    """``args`` with the values of secret options replaced (see the module rules)."""
    secret: set[str] = set()
    for p in command.params:
        if isinstance(p, click.Option) and (SECRET_NAME.search(p.name or "") or p.hide_input):
            secret.update(p.opts + p.secondary_opts)
    out: list[str] = []
    hide_next = False
    for a in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif a in secret:
            out.append(a)
            hide_next = True
        elif "=" in a and a.split("=", 1)[0] in secret:
            out.append(a.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(a)
    return out


def site_folder(command: click.Command, args: list[str], parent: click.Context) -> Path | None:
    """The --dir the command was given (else $VALISE_DIR or the current folder), or None
    when the command does not act on a site."""
    if not any(p.name == "directory" for p in command.params):
        return None
    with command.make_context(command.name, list(args), parent=parent, resilient_parsing=True) as c:
        given = c.params.get("directory")
    if isinstance(given, str | Path):
        return Path(given)
    return CommandEnvironment.from_environ().site_dir


async def _store_record(
    folder: Path, path: list[str], shown: list[str], code: int, started: datetime
) -> None:
    try:
        config = load_site_config(folder)
    except ConfigError:
        return  # not a site (yet): nothing to record
    if config.store.backend == "sqlite" and not config.store_path.exists():
        return  # no store yet (e.g. a copied folder): don't create one to log into
    store = await open_store(config)
    try:
        await store.audit_identify(config.site.id)
        await record(
            store,
            actor=operator(),
            action="cli." + ".".join(path),
            subject=str(folder),
            result="ok" if code == 0 else f"error: {code}",
            detail={"args": json.dumps(shown), "started": started.isoformat()},
        )
    finally:
        await store.close()


def record_command(
    group: click.Group, ctx: click.Context, args: list[str], code: int, started: datetime
) -> None:
    """Record one finished command (see the module rules); never raises."""
    if "--help" in args or "-h" in args:
        return
    path, command = resolve(group, ctx, args)
    if command is None or tuple(path) in OFFLINE:
        return
    try:
        folder = site_folder(command, args[len(path) :], ctx)
        if folder is None:
            return
        shown = redact(command, args[len(path) :])
        asyncio.run(_store_record(folder, path, shown, code, started))
    except (StoreError, AuditError, OSError, RuntimeError, click.ClickException) as exc:
        click.echo(f"valise: warning: this command is not in the audit log: {exc}", err=True)


def command_args(ctx: click.Context) -> list[str]:
    """The arguments the top group was given (after the program name)."""
    return list(ctx.meta.get(_ARGS, []))


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.exit_code
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    return 1


class AuditedGroup(click.Group):
    """The top ``valise`` group: runs the command, then records it (see the rules)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        started = datetime.now(UTC)
        code = 0
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            code = _exit_code(exc)
            raise
        finally:
            record_command(self, ctx, list(ctx.meta.get(_ARGS, [])), code, started)
