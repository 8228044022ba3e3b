"""``valise keys``: a site's keys, generated offline and through their lifecycle.

keys list [--json]                                   every key, its state and times
                                                     (ids as unique prefixes; --json: whole)
keys rotate --kind signing|encryption|tls [--overlap DURATION] [--now] [--dry-run]
keys activate KEYID [--overlap DURATION] [--dry-run]  one step of a rotation
keys retire KEYID [--dry-run]                         end a key's overlap now
keys revoke KEYID --reason TEXT [--dry-run]           now, everywhere (HQ: any site's key)
keys encrypt                                          encrypt the private key files in place
keys generate --site SITE [--dir DIR] [--days N]      offline: new keys and SITE.pub.xml

KEYID is a key id or TLS pin, or a unique prefix of one of at least 6 characters
(routing/key_prefix.py). Each step is idempotent (run again, it does nothing) and
prints what it did; with ``--dry-run`` what it would do, changing nothing. A running
gateway picks the changes up by itself within ``[keys] check_seconds``: no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from config.settings import CommandEnvironment
from config.site import ConfigError, load_site_config, read_key_passphrase
from envelope.errors import UsageError
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, site_dir
from gateway.cli.record import operator
from gateway.proof.audit import AuditError
from gateway.site.keystore import KeyStoreError, generate_site_keys
from gateway.store.base import StoreError
from gateway.trust.key_report import audit_key_event, key_rows
from gateway.trust.lifecycle import KeyOps, parse_duration
from gateway.trust.lookup import directory_keys, listed_prefixes, ring_keys
from gateway.trust.outcome import KeyOpError, Outcome
from routing.directory import DirectoryError
from routing.key_prefix import KeyPrefixError, KnownKey, resolve_prefix

DRY_RUN = click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
OVERLAP = click.option(
    "--overlap",
    default=None,
    help="How long the replaced key stays retiring (90s, 30m, 12h, 7d; default [keys]"
    " overlap_seconds).",
)


@click.group()
def keys() -> None:
    """Manage a site's keys."""


@keys.command("generate")
@click.option("--site", required=True, help="Site id, e.g. HQ or M-PARIS.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Key folder (default: $VALISE_DIR or the current folder).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Validity of the public key document.",
)
@one_line_errors
def keys_generate(site: str, directory: Path | None, days: int) -> None:
    """Create SITE's signing and encryption keys and SITE.pub.xml (the private keys
    encrypted under VALISE_KEY_PASSPHRASE when it is set)."""
    from envelope.errors import SchemaError
    from envelope.values import check_site_id

    try:
        check_site_id(site)
    except SchemaError as exc:
        raise UsageError(str(exc)) from None
    target = directory or CommandEnvironment.from_environ().site_dir
    made = generate_site_keys(
        site, target, validity=timedelta(days=days), passphrase=read_key_passphrase(target)
    )
    click.echo(f"{target / (site + '.pub.xml')}")
    click.echo(
        f"valise: keys for {site}: signing {made.signing.key_id}, "
        f"encryption {made.decryption.key_id}",
        err=True,
    )


def _ops(directory: Path | None) -> KeyOps:
    try:
        return KeyOps(load_site_config(site_dir(directory)))
    except ConfigError as exc:
        fail(ExitCode.FILES, str(exc))


def _known(ops: KeyOps, *, every_site: bool) -> list[KnownKey]:
    """The keys a KEYID prefix is resolved against: the ring, and with ``every_site``
    every key in the directory in force (gateway/trust/lookup.py)."""
    known = ring_keys(ops.ring())
    if every_site:
        try:
            known += directory_keys(ops.directory())
        except DirectoryError as exc:
            fail(ExitCode.FILES, str(exc))
    return known


def _key_id(ops: KeyOps, text: str, *, every_site: bool) -> str:
    """The whole key id a KEYID argument (an id, or a unique prefix of one) names."""
    try:
        return resolve_prefix(text, _known(ops, every_site=every_site))
    except KeyStoreError as exc:
        fail(ExitCode.FILES, str(exc))
    except KeyPrefixError as exc:
        fail(ExitCode.USAGE, str(exc))


def _overlap(ops: KeyOps, text: str | None) -> timedelta:
    if text is None:
        return timedelta(seconds=ops.config.keys.overlap_seconds)
    try:
        return parse_duration(text)
    except KeyOpError as exc:
        fail(ExitCode.USAGE, str(exc))


def _run(
    step: Callable[[], Coroutine[Any, Any, Outcome]], ops: KeyOps, action: str, subject: str
) -> None:
    try:
        out = asyncio.run(step())
    except (KeyOpError, KeyStoreError, DirectoryError) as exc:
        _audit(ops, action, subject, Outcome([str(exc)]), "error")
        fail(ExitCode.USAGE, str(exc))
    if not any(line.startswith("would ") for line in out.steps):
        _audit(ops, action, subject, out, "ok")
    for line in out.steps:
        click.echo(line)
    if out.serial is not None:
        click.echo(f"directory serial {out.serial}")


def _audit(ops: KeyOps, action: str, subject: str, out: Outcome, result: str) -> None:
    """The key event in the audit log; a failure to write it is a warning, not an error
    (the key change is made and published)."""
    try:
        asyncio.run(audit_key_event(ops.config, action, subject, out, result, actor=operator()))
    except (AuditError, StoreError) as exc:
        click.echo(f"valise: warning: not in the audit log: {exc}", err=True)


@keys.command("list")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def keys_list(directory: Path | None, as_json: bool) -> None:
    """Every key of the site: kind, id, state, created, activated, expiry."""
    ops = _ops(directory)
    try:
        rows: list[dict[str, Any]] = list(key_rows(ops.ring(), ops.config))
    except KeyStoreError as exc:
        fail(ExitCode.FILES, str(exc))
    columns = [
        ("kind", "KIND", 12),
        ("id", "ID", 20),
        ("state", "STATE", 10),
        ("created", "CREATED", 27),
        ("activated", "ACTIVATED", 27),
        ("expires", "EXPIRES", 27),
    ]
    if not as_json:  # each id by a prefix that keys revoke|activate|retire take back
        known = ring_keys(ops.ring())
        with contextlib.suppress(DirectoryError):  # the ring alone if it is unreadable
            known += directory_keys(ops.directory())
        shown = listed_prefixes([r["id"] for r in rows], known)
        rows = [{**r, "id": shown[r["id"]]} for r in rows]
        # Wide enough for the longest shown (a whole id when no prefix is unique).
        columns[1] = ("id", "ID", max([20, *(len(r["id"]) + 2 for r in rows)]))
    emit(rows, as_json, columns)


@keys.command("rotate")
@click.option("--kind", type=click.Choice(["signing", "encryption", "tls"]), required=True)
@OVERLAP
@click.option(
    "--now",
    "at_once",
    is_flag=True,
    help="Activate the new key at once, without waiting for the other sites to fetch"
    " it (an emergency: peers that have not fetched it defer traffic until they do).",
)
@DRY_RUN
@DIR_OPTION
@one_line_errors
def keys_rotate(
    kind: str, overlap: str | None, at_once: bool, dry_run: bool, directory: Path | None
) -> None:
    """Replace the active KIND key. A new key is generated and published as next; it
    becomes active once every site has fetched a directory announcing it (HQ's
    record, `valise directory status`) or at the latest after [keys]
    announce_seconds (3600; 0 = at once), whichever comes first. The running
    gateway activates it and publishes that; the old key then stays retiring for
    the overlap. The command prints when: "activates when every site has fetched
    directory N, at the latest at T". Run again, it resumes (and activates the key
    if its time has come). --now activates at once; `valise keys activate KEYID`
    does it later by hand. Never asks a question: safe in scripts."""
    ops = _ops(directory)
    _run(
        lambda: ops.rotate(kind, _overlap(ops, overlap), dry_run=dry_run, at_once=at_once),
        ops,
        "key.rotate",
        kind,
    )


@keys.command("activate")
@click.argument("key_id")
@OVERLAP
@DRY_RUN
@DIR_OPTION
@one_line_errors
def keys_activate(key_id: str, overlap: str | None, dry_run: bool, directory: Path | None) -> None:
    """Make a published next key active; the key it replaces starts retiring. KEY_ID is
    an id of this site's ring, or a unique prefix of one (at least 6 characters)."""
    ops = _ops(directory)
    key_id = _key_id(ops, key_id, every_site=False)
    _run(
        lambda: ops.activate(key_id, _overlap(ops, overlap), dry_run=dry_run),
        ops,
        "key.activate",
        key_id,
    )


@keys.command("retire")
@click.argument("key_id")
@DRY_RUN
@DIR_OPTION
@one_line_errors
def keys_retire(key_id: str, dry_run: bool, directory: Path | None) -> None:
    """Retire a retiring key now (its overlap ends): refused everywhere from then on.
    KEY_ID is an id of this site's ring, or a unique prefix of one (at least 6
    characters)."""
    ops = _ops(directory)
    key_id = _key_id(ops, key_id, every_site=False)
    _run(lambda: ops.retire(key_id, dry_run=dry_run), ops, "key.retire", key_id)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (kept in the ring and the audit log).")
@DRY_RUN
@DIR_OPTION
@one_line_errors
def keys_revoke(key_id: str, reason: str, dry_run: bool, directory: Path | None) -> None:
    """Revoke a key at once, everywhere: refused by every site from its next directory.

    \b
    Who may revoke what:
    - HQ may revoke any site's key (signing, encryption or TLS);
    - a mission only its own keys.
    \b
    What happens:
    - an own active key is replaced at once: a new key is published and made
      active in the same step, with no overlap;
    - a mission's key revoked at HQ: the mission sees the revocation in the next
      directory it fetches, revokes the key in its ring and replaces it itself
      (its running gateway does this within [keys] check_seconds);
    - until the replacement is published, mail to that mission waits (valise
      send queues it and seals it to the new key once the directory has one).

    KEY_ID is a key id or TLS pin, or a unique prefix of one (at least 6
    characters, as `valise keys list` prints them); a prefix that matches more
    than one key, of this site or any other in the directory, is refused with
    the candidates named.
    """
    ops = _ops(directory)
    key_id = _key_id(ops, key_id, every_site=True)
    _run(lambda: ops.revoke(key_id, reason, dry_run=dry_run), ops, "key.revoke", key_id)


@keys.command("encrypt")
@DIR_OPTION
@one_line_errors
def keys_encrypt(directory: Path | None) -> None:
    """Encrypt this site's private key files in place under its key passphrase
    (VALISE_KEY_PASSPHRASE or [keys] passphrase_file). Keys encrypted already must open
    with it; all are checked before any is written."""
    from gateway.site.keyring import encrypt_key_files

    ops = _ops(directory)
    if ops.config.key_passphrase is None:
        fail(
            ExitCode.USAGE, "no key passphrase: set VALISE_KEY_PASSPHRASE or [keys] passphrase_file"
        )
    done = encrypt_key_files(ops.keys_dir, ops.config.key_passphrase)
    for path in done:
        click.echo(str(path))
    click.echo(f"valise: {len(done)} key file(s) encrypted", err=True)
