"""The ``valise`` admin CLI: its root group, exit codes and error lines.

Conventions (PRODUCT.md, Admin CLI): data on stdout, messages on stderr, ``--json``
on every listing, one clear line per error. Exit codes (``ExitCode``):

    0  success
    1  the envelope or document was rejected (parse, signature, decryption, digest)
    2  usage error (bad arguments, a value the format cannot carry)
    3  files or keys: not found, not readable, too readable, would overwrite
   75  temporary failure, nothing done: try again (EX_TEMPFAIL, as mail tools expect)

Per command: docs/CLI.md.

Layout of the package:
- app.py (here): the root group (``make_root``), ``ExitCode``, ``fail``,
  ``one_line_errors``. It defines no command and imports no command module.
- common.py: the options and helpers every command module shares (``--dir``,
  ``--json``, ``with_site``, ``emit``); table.py, views.py, directory_view.py and
  record.py are helpers too.
- One module per command group (envelope, keys, site, directory, message, inbox,
  queue, organ, integrator, audit, evidence, timestamp, doctor): each defines its
  commands without importing the root group or another command module
  (an import-linter contract in pyproject.toml).
- main.py builds the root group and registers every module's commands explicitly:
  ``valise`` and ``python -m gateway`` run ``gateway.cli.main:main``.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click

from envelope.errors import EnvelopeError, UsageError
from gateway.cli.record import AuditedGroup
from gateway.site.keystore import KeyStoreError
from gateway.site.modes import SITE_UMASK
from gateway.store.base import StoreError


class ExitCode(enum.IntEnum):
    """The documented exit codes of every command (docs/CLI.md)."""

    OK = 0
    REJECTED = 1  # an envelope, key document or bundle that does not verify
    USAGE = 2  # bad arguments, a value the format cannot carry, nothing to act on
    FILES = 3  # files or keys: not found, not readable, too readable, would overwrite
    TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: nothing done, the caller may try again later


F = TypeVar("F", bound=Callable[..., Any])


def fail(code: ExitCode, message: str) -> NoReturn:
    """``valise: MESSAGE`` on stderr, then exit with ``code``."""
    click.echo(f"valise: {message}", err=True)
    sys.exit(int(code))


def one_line_errors(fn: F) -> F:
    """Turn the typed errors into one line on stderr and a documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            fail(ExitCode.USAGE, f"error: {exc}")
        except EnvelopeError as exc:
            fail(ExitCode.REJECTED, f"rejected: {exc}")
        except KeyStoreError as exc:
            fail(ExitCode.FILES, f"keys: {exc}")
        except StoreError as exc:  # busy, locked, unreachable: the step was not done
            fail(ExitCode.TEMPFAIL, f"store unavailable, try again: {exc}")
        except OSError as exc:
            fail(ExitCode.FILES, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))

    return wrapper  # type: ignore[return-value]


def make_root() -> click.Group:
    """A new root ``valise`` group with no commands (gateway/cli/main.py adds them)."""

    @click.group(cls=AuditedGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="valise-gateway")
    @click.pass_context
    def main(ctx: click.Context) -> None:
        """Valise: signed, end-to-end encrypted document exchange between sites."""
        # Every file a command creates (exports, a new site, SQLite's -wal/-shm) is private.
        os.umask(SITE_UMASK)
        warn_if_directory_stale(ctx)

    return main


def warn_if_directory_stale(ctx: click.Context) -> None:
    """Tell the operator, on every command that acts on a mission, that its directory
    has not been fetched from HQ for too long (gateway/trust/directory_age.py). Never fails
    the command: a folder that is not a site yet says nothing."""
    from config.site import ConfigError, load_site_config
    from gateway.cli.record import command_args, resolve, site_folder
    from gateway.trust.directory_age import stale_reason

    args = command_args(ctx)
    if not args or "--help" in args or "-h" in args or not isinstance(ctx.command, click.Group):
        return
    try:
        path, command = resolve(ctx.command, ctx, args)
        folder = None if command is None else site_folder(command, args[len(path) :], ctx)
        if folder is None:
            return
        stale = stale_reason(load_site_config(folder), datetime.now(UTC))
    except (ConfigError, OSError, click.ClickException):
        return
    if stale is not None:
        click.echo(f"valise: warning: {stale}", err=True)
