"""``valise init | join | serve`` and ``valise site``: making a site and running it.

init --site HQ --listen HOST:PORT [--ops-listen ...]   create HQ
site add SITE --endpoint URL --out BUNDLE             HQ: register a mission
site list | site show SITE [--json]                   the sites in the directory in force
join BUNDLE --listen HOST:PORT [--ops-listen ...]     create a mission from its bundle
serve                                                 run the site until SIGTERM
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from config.site import ConfigError
from envelope.errors import SchemaError, UsageError
from envelope.values import check_site_id
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, site_dir, with_site
from gateway.cli.table import printable
from gateway.site.context import SiteContext, create_store
from gateway.trust.enroll import EnrollError, add_site, init_hub, join
from routing.directory import DirectoryError

KEY_PASSPHRASE_FILE = click.option(
    "--key-passphrase-file",
    "key_file",
    default="",
    help="A 0600 file holding the passphrase that encrypts the private keys (kept in "
    "[keys] passphrase_file; VALISE_KEY_PASSPHRASE is used instead when set).",
)


def _absolute(path: str) -> str:
    """A file named on the command line, as valise.toml keeps it (not relative to DIR)."""
    return str(Path(path).resolve()) if path else ""


@click.command("init")
@click.option("--site", required=True)
@click.option("--role", type=click.Choice(["hub"]), default="hub", show_default=True)
@DIR_OPTION
@click.option("--listen", required=True, help="HOST:PORT of the mutual-TLS channel.")
@click.option("--ops-listen", default="127.0.0.1:0", show_default=True)
@KEY_PASSPHRASE_FILE
@one_line_errors
def init(
    site: str, role: str, directory: Path | None, listen: str, ops_listen: str, key_file: str
) -> None:
    """Create HQ: config, keys, site CA, directory key and the first signed directory."""
    try:
        check_site_id(site)
        init_hub(
            site_dir(directory),
            site=site,
            listen=listen,
            ops_listen=ops_listen,
            passphrase_file=_absolute(key_file),
        )
        asyncio.run(create_store(site_dir(directory)))
    except (SchemaError, EnrollError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    click.echo(f"valise: {site} created in {site_dir(directory)} (directory serial 1)", err=True)


@click.group("site")
def site_group() -> None:
    """Sites in the directory (at HQ)."""


@site_group.command("add")
@click.argument("site")
@click.option("--endpoint", required=True, help="https://HOST:PORT where the mission listens.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@DIR_OPTION
@one_line_errors
def site_add(site: str, endpoint: str, out: Path, directory: Path | None) -> None:
    """Register a mission and write its one-time enrollment bundle."""
    try:
        check_site_id(site)
        add_site(site_dir(directory), site, endpoint, out)
    except ConfigError as exc:  # not a site folder: files, as for every site command
        fail(ExitCode.FILES, str(exc))
    except (SchemaError, EnrollError) as exc:
        raise UsageError(str(exc)) from None
    click.echo(str(out))
    click.echo(f"valise: bundle for {site} written; give it to the mission (valise join)", err=True)


@site_group.command("list")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def site_list(directory: Path | None, as_json: bool) -> None:
    """Sites in the directory in force."""

    async def go(ctx: SiteContext) -> list[dict[str, Any]]:
        return [
            {
                "site": e.site,
                "status": "active" if e.active else "disabled",
                "endpoint": e.endpoint,
                "signing": next(iter(e.verify_keys()), "-"),
            }
            for e in ctx.directory.sites
        ]

    emit(
        with_site(directory, go),
        as_json,
        [
            ("site", "SITE", 12),
            ("status", "STATUS", 10),
            ("endpoint", "ENDPOINT", 30),
            ("signing", "SIGNING KEY", 34),
        ],
    )


@site_group.command("show")
@click.argument("site")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def site_show(site: str, directory: Path | None, as_json: bool) -> None:
    """One site's entry in the directory: endpoint, keys and their states, TLS pins,
    and the organs it serves (valise organ list)."""

    async def go(ctx: SiteContext) -> dict[str, Any]:
        try:
            e = ctx.directory.site(site)
        except DirectoryError as exc:
            raise UsageError(str(exc)) from None
        return {
            "site": e.site,
            "status": "active" if e.active else "disabled",
            "endpoint": e.endpoint,
            "directory_serial": ctx.directory.serial,
            "signing_keys": [{"id": k.key_id, "state": s.value} for k, s in e.signing],
            "encryption_keys": [{"id": k.key_id, "state": s.value} for k, s in e.encryption],
            "tls_pins": list(e.tls_pins),
            "organs": [{"id": o.organ_id, "name": o.name} for o in e.organs],
        }

    info = with_site(directory, go)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key in ("site", "status", "endpoint", "directory_serial"):
        click.echo(f"{key:<18}{info[key]}")
    for kind in ("signing_keys", "encryption_keys"):
        for k in info[kind]:
            click.echo(f"{kind[:-5] + ' key':<18}{k['id']}  {k['state']}")
    for pin in info["tls_pins"]:
        click.echo(f"{'tls pin':<18}{pin}")
    for o in info["organs"]:
        click.echo(printable(f"{'organ':<18}{o['id']}" + (f"  {o['name']}" if o["name"] else "")))


@click.command("join")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@DIR_OPTION
@click.option("--listen", required=True)
@click.option("--ops-listen", default="127.0.0.1:0", show_default=True)
@KEY_PASSPHRASE_FILE
@one_line_errors
def join_cmd(
    bundle: Path, directory: Path | None, listen: str, ops_listen: str, key_file: str
) -> None:
    """Create a mission from its enrollment bundle (HQ must be reachable)."""
    try:
        config = asyncio.run(
            join(
                bundle,
                site_dir(directory),
                listen=listen,
                ops_listen=ops_listen,
                passphrase_file=_absolute(key_file),
            )
        )
        asyncio.run(create_store(site_dir(directory)))
    except (EnrollError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    click.echo(f"valise: {config.site.id} joined {config.site.hub}", err=True)


@click.command("serve")
@DIR_OPTION
@click.option("--ready-file", type=click.Path(path_type=Path), default=None, hidden=True)
def serve_cmd(directory: Path | None, ready_file: Path | None) -> None:
    """Run the site until SIGTERM."""
    from gateway.service.serve import run
    from gateway.site.keystore import KeyStoreError
    from gateway.site.modes import SiteModeError

    try:
        run(site_dir(directory), ready_file)
    except (ConfigError, DirectoryError, KeyStoreError, SiteModeError, OSError) as exc:
        fail(ExitCode.FILES, str(exc))
