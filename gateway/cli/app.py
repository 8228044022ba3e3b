"""The ``valise`` admin CLI.

Conventions (PRODUCT.md, Admin CLI): data on stdout, messages on stderr, ``--json``
on every listing, one clear line per error. Exit codes:

    0  success
    1  the envelope or document was rejected (parse, signature, decryption, digest)
    2  usage error (bad arguments, a value the format cannot carry)
    3  files or keys: not found, not readable, too readable, would overwrite
   75  temporary failure, nothing done: try again (EX_TEMPFAIL, as mail tools expect)

Per command: docs/CLI.md.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from config.settings import CommandEnvironment
from config.site import read_key_passphrase
from envelope.errors import EnvelopeError, UsageError
from envelope.head import ParsedHead
from envelope.seal import Recipient, new_routing
from envelope.values import Priority, check_doc_class, check_dossier, format_time, parse_time
from gateway.cli.record import AuditedGroup
from gateway.relay.envelope_io import InputPart, inspect_file, open_to_dir, seal_to_file
from gateway.site.keystore import KeyStoreError, generate_site_keys, load_public_doc, load_site_keys
from gateway.site.modes import SITE_UMASK
from gateway.store.base import StoreError

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_FILES = 3
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; the caller may try again later

F = TypeVar("F", bound=Callable[..., Any])


def _fail(code: int, message: str) -> None:
    click.echo(f"valise: {message}", err=True)
    sys.exit(code)


def one_line_errors(fn: F) -> F:
    """Turn the typed errors into one line on stderr and a documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            _fail(EXIT_USAGE, f"error: {exc}")
        except EnvelopeError as exc:
            _fail(EXIT_REJECTED, f"rejected: {exc}")
        except KeyStoreError as exc:
            _fail(EXIT_FILES, f"keys: {exc}")
        except StoreError as exc:  # busy, locked, unreachable: the step was not done
            _fail(EX_TEMPFAIL, f"store unavailable, try again: {exc}")
        except OSError as exc:
            _fail(EXIT_FILES, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return None

    return wrapper  # type: ignore[return-value]


@click.group(cls=AuditedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="valise-gateway")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Valise: signed, end-to-end encrypted document exchange between sites."""
    # Every file a command creates (exports, a new site, SQLite's -wal/-shm) is private.
    os.umask(SITE_UMASK)
    warn_if_directory_stale(ctx)


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


# -- keys -------------------------------------------------------------------------


@main.group()
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
    from datetime import timedelta

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


# -- seal / open / inspect -------------------------------------------------------------


def _parse_expires(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--expires {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


@main.command("seal")
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="The sending site's key folder.",
)
@click.option(
    "--to",
    "to_docs",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="A destination's SITE.pub.xml (repeat for several).",
)
@click.option(
    "--in",
    "inputs",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    multiple=True,
    required=True,
    help="A file to seal (repeat for several parts).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Envelope file.")
@click.option("--class", "doc_class", default="document", show_default=True)
@click.option("--subject", default=None)
@click.option(
    "--priority",
    type=click.Choice([p.value for p in Priority]),
    default="routine",
    show_default=True,
)
@click.option("--dossier", default=None)
@click.option("--expires", default=None, help="ISO 8601 (default: 30 days from now).")
@click.option(
    "--media-type",
    "media_types",
    multiple=True,
    help="Media type of each --in, in order (default: guessed from the name).",
)
@one_line_errors
def seal(
    keys_dir: Path,
    to_docs: tuple[Path, ...],
    inputs: tuple[Path, ...],
    out: Path,
    doc_class: str,
    subject: str | None,
    priority: str,
    dossier: str | None,
    expires: str | None,
    media_types: tuple[str, ...],
) -> None:
    """Seal files into one envelope for one or more destination sites."""
    from envelope.errors import SchemaError

    if out.exists():
        raise FileExistsError(17, "refusing to overwrite", str(out))
    if len(media_types) > len(inputs):
        raise UsageError("more --media-type than --in")
    sender = load_site_keys(keys_dir, read_key_passphrase(keys_dir))
    now = datetime.now(UTC)
    recipients = []
    for doc_path in to_docs:
        doc = load_public_doc(doc_path)
        if not doc.is_valid_at(now):
            raise UsageError(f"{doc_path}: the key document of {doc.site} is not valid now")
        recipients.append(Recipient(doc.site, doc.encryption))
    try:
        check_doc_class(doc_class)
        if dossier is not None:
            check_dossier(dossier)
        routing = new_routing(
            origin=sender.site,
            destinations=[r.site for r in recipients],
            now=now,
            expires=_parse_expires(expires),
            priority=Priority(priority),
            doc_class=doc_class,
            dossier=dossier,
        )
    except SchemaError as exc:
        raise UsageError(str(exc)) from None
    parts = [
        InputPart(
            path=p,
            name=p.name,
            media_type=(
                media_types[i]
                if i < len(media_types)
                else mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            ),
        )
        for i, p in enumerate(inputs)
    ]
    sealing = seal_to_file(
        out,
        routing=routing,
        sender=sender.signing,
        recipients=recipients,
        inputs=parts,
        subject=subject,
        originator=None,
    )
    click.echo(sealing.message_id)
    click.echo(
        f"valise: sealed {len(parts)} part(s) for {', '.join(routing.destinations)} into {out}",
        err=True,
    )


@main.command("open")
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="The receiving site's key folder.",
)
@click.option(
    "--from",
    "from_doc",
    type=click.Path(path_type=Path),
    required=True,
    help="The origin site's SITE.pub.xml.",
)
@click.option(
    "--in", "envelope", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True
)
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@one_line_errors
def open_(keys_dir: Path, from_doc: Path, envelope: Path, out_dir: Path) -> None:
    """Verify and decrypt an envelope; write its parts into OUT-DIR."""
    from envelope.errors import SignatureInvalid

    me = load_site_keys(keys_dir, read_key_passphrase(keys_dir))
    origin = load_public_doc(from_doc)
    parsed = inspect_file(envelope)
    if parsed.head.routing.origin != origin.site:
        raise SignatureInvalid(
            f"the envelope is from {parsed.head.routing.origin}, not from {origin.site}"
        )
    opened = open_to_dir(envelope, out_dir, sender=origin.signing, site=me.site, key=me.decryption)
    for path in opened.files:
        click.echo(str(path))
    subject = opened.sealed.subject
    click.echo(
        f"valise: {parsed.head.routing.message_id} from {origin.site} verified; "
        f"{len(opened.files)} part(s)" + (f"; subject: {subject}" if subject else ""),
        err=True,
    )


def head_summary(parsed: ParsedHead) -> dict[str, Any]:
    h = parsed.head
    r = h.routing
    return {
        "format": "valise/v1",
        "message_id": r.message_id,
        "origin": r.origin,
        "destinations": list(r.destinations),
        "created": format_time(r.created),
        "expires": format_time(r.expires),
        "priority": r.priority.value,
        "class": r.doc_class,
        "dossier": r.dossier,
        "in_reply_to": r.in_reply_to,
        "recipients": [{"site": s.site, "key": s.key_id} for s in h.recipients],
        "manifest": {
            "sealed_header": {
                "length": h.manifest.sealed_header.length,
                "sha256": h.manifest.sealed_header.sha256.hex(),
            },
            "parts": [{"length": s.length, "sha256": s.sha256.hex()} for s in h.manifest.parts],
        },
        "signature_key": h.signature_key_id,
        "envelope_sha256": parsed.digest.hex(),
        "trace": [
            {"site": t.site, "key": t.key_id, "at": format_time(t.at), "from": t.received_from}
            for t in h.trace
        ],
    }


@main.command("inspect")
@click.argument("envelope", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@one_line_errors
def inspect(envelope: Path, as_json: bool) -> None:
    """Show an envelope's routing header, recipients and manifest (no keys needed).

    Inspect checks the format and framing only: it does not verify the signature,
    which needs the origin's public key (use `valise open`).
    """
    summary = head_summary(inspect_file(envelope))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [
        ("message id", summary["message_id"]),
        ("origin", summary["origin"]),
        ("to", ", ".join(summary["destinations"])),
        ("created", summary["created"]),
        ("expires", summary["expires"]),
        ("priority", summary["priority"]),
        ("class", summary["class"]),
        ("dossier", summary["dossier"] or "-"),
        ("in reply to", summary["in_reply_to"] or "-"),
        ("signed by key", summary["signature_key"]),
        ("envelope sha256", summary["envelope_sha256"]),
    ]
    for label, value in rows:
        click.echo(f"{label:<16}{value}")
    for s in summary["recipients"]:
        click.echo(f"{'recipient':<16}{s['site']:<12} key {s['key']}")
    m = summary["manifest"]
    click.echo(
        f"{'sealed header':<16}{m['sealed_header']['length']:>12} bytes  "
        f"{m['sealed_header']['sha256']}"
    )
    for i, p in enumerate(m["parts"], start=1):
        click.echo(f"{'part ' + str(i):<16}{p['length']:>12} bytes  {p['sha256']}")
    for t in summary["trace"]:
        click.echo(f"{'hop':<16}{t['site']} from {t['from']} at {t['at']}")


_ = parse_time  # re-exported for scripts that format times like the CLI


def _register_site_commands() -> None:
    # The site commands live in their own module; importing it registers them.
    import gateway.cli.audit
    import gateway.cli.doctor
    import gateway.cli.evidence
    import gateway.cli.integrator
    import gateway.cli.keys
    import gateway.cli.organ
    import gateway.cli.queue
    import gateway.cli.site
    import gateway.cli.timestamp  # noqa: F401


_register_site_commands()
