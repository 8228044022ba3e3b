"""``valise`` commands that act on a site: init, site, join, serve, send, status, inbox, queue."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from config.settings import CommandEnvironment
from config.site import ConfigError, load_site_config
from envelope.errors import SchemaError, UsageError
from envelope.values import Priority, check_message_id, check_site_id, format_time
from gateway.cli.app import EX_TEMPFAIL, EXIT_FILES, EXIT_USAGE, _fail, main, one_line_errors
from gateway.cli.table import Column, printable, render
from gateway.site.context import SiteContext, create_store, load_site
from gateway.site.export_dir import ExportDir
from gateway.store.base import InState, OutState
from gateway.trust.enroll import EnrollError, add_site, init_hub, join
from routing.directory import DirectoryError

T = TypeVar("T")
DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The site folder (default: $VALISE_DIR, else the current folder).",
)


def site_dir(directory: Path | None) -> Path:
    return directory or CommandEnvironment.from_environ().site_dir


def with_site(directory: Path | None, fn: Callable[[SiteContext], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            ctx = await load_site(site_dir(directory))
        except (ConfigError, DirectoryError, EnrollError) as exc:
            _fail(EXIT_FILES, str(exc))
            raise
        try:
            return await fn(ctx)
        finally:
            await ctx.store.close()

    return asyncio.run(go())


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


# The history lines of ``valise status``.
STATUS_COLUMNS = [
    Column("at", "AT"),
    Column("state", "STATE"),
    Column("peer", "PEER"),
    Column("reason", "REASON"),
]


@main.command("init")
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


@main.group("site")
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
        _fail(EXIT_FILES, str(exc))
    except (SchemaError, EnrollError) as exc:
        raise UsageError(str(exc)) from None
    click.echo(str(out))
    click.echo(f"valise: bundle for {site} written; give it to the mission (valise join)", err=True)


@site_group.command("list")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
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


@main.group("directory")
def directory_group() -> None:
    """The signed site directory."""


@directory_group.command("show")
@DIR_OPTION
@click.option("--xml", "as_xml", is_flag=True, help="Print the signed directory itself.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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


@main.command("join")
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


@main.command("serve")
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
        _fail(EXIT_FILES, str(exc))


@main.command("send")
@click.option("--to", "to", required=True, multiple=True)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option("--class", "doc_class", default="document", show_default=True)
@click.option("--subject", default=None)
@click.option("--priority", type=click.Choice([p.value for p in Priority]), default="routine")
@DIR_OPTION
@one_line_errors
def send(
    to: tuple[str, ...],
    files: tuple[Path, ...],
    doc_class: str,
    subject: str | None,
    priority: str,
    directory: Path | None,
) -> None:
    """Seal FILES for the --to sites and queue them; prints the message id.

    A site with no active encryption key yet (its key was revoked and the
    replacement is not published) does not stop the send: the document is queued,
    held, and sealed to the new key by the running site once the directory has it.
    Exit codes: 0 queued (also when waiting for a key; a notice on stderr), 2 usage
    (unknown site, bad option), 3 files, 75 the store is busy or unreachable:
    nothing was queued, try again (docs/CLI.md)."""
    from gateway.relay.key_wait import keyless_destinations, waiting_notice
    from gateway.relay.outbox import Document, send_documents
    from gateway.store.base import StoreError

    documents = [
        Document(
            f.name, mimetypes.guess_type(f.name)[0] or "application/octet-stream", f.read_bytes()
        )
        for f in files
    ]

    async def go(ctx: SiteContext) -> tuple[str, list[str]]:
        mid = await send_documents(
            ctx,
            to,
            documents,
            now=datetime.now(UTC),
            subject=subject,
            priority=Priority(priority),
            doc_class=doc_class,
        )
        # The same directory the send used (this process reads it once): who waits.
        return mid, keyless_destinations(ctx.directory, to)

    try:
        mid, waiting = with_site(directory, go)
    except StoreError as exc:
        _fail(EX_TEMPFAIL, f"nothing queued, try again: {exc}")
        return
    click.echo(mid)
    if waiting:
        click.echo(f"valise: {waiting_notice(waiting)}", err=True)


@main.command("status")
@click.argument("message_id")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
@one_line_errors
def status(message_id: str, directory: Path | None, as_json: bool) -> None:
    """A message's history and receipt. For a document received here, "here" is its
    state at this site, and why it is not delivered yet if it is still "received"
    (for instance "receipt deferred: M-HANOI has no active encryption key": it is
    delivered, with its receipt, once the directory lists one)."""
    from gateway.cli.views import inbound_status
    from gateway.relay.circular_status import message_status, status_json

    async def go(ctx: SiteContext) -> dict[str, Any]:
        history = await ctx.store.history(message_id)
        ms = await message_status(ctx.store, message_id)
        per_site: dict[str, Any] = {}
        if ms is not None and ms.total:
            per_site = status_json(ms)
        else:  # no destination rows here: a receipt envelope, mail received here
            per_site = {"delivered": await ctx.store.receipt(message_id) is not None}
        return {
            "id": message_id,
            **per_site,
            "here": await inbound_status(ctx, message_id),
            "history": [
                {
                    "at": format_time(t.at),
                    "peer": t.peer or "",
                    "state": t.state,
                    "reason": t.reason,
                }
                for t in history
            ],
        }

    info = with_site(directory, go)
    if not info["history"]:
        _fail(EXIT_USAGE, f"no message {message_id} at this site")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    state = "delivered (receipt verified)" if info["delivered"] else "not delivered yet"
    if info.get("of"):
        state = info["summary"]
    if info["here"] is not None:
        here = info["here"]
        mine = f"{here['state']} here" + (f" — {here['note']}" if here["note"] else "")
        state = f"{mine}; {state}" if info.get("of") else mine  # a hub relays it too
    click.echo(printable(f"{message_id}  {state}"))
    if info.get("of"):
        for line in render(_destination_rows(info["destinations"]), DESTINATION_COLUMNS):
            click.echo(f"  {line}")
    for line in render(info["history"], STATUS_COLUMNS)[1:]:
        click.echo(f"  {line}")


DESTINATION_COLUMNS = [
    Column("site", "SITE"),
    Column("state", "STATE"),
    Column("via", "VIA"),
    Column("attempts", "TRIES"),
    Column("receipt_at", "RECEIPT AT"),
    Column("sha256", "RECEIPT SHA-256"),
    Column("reason", "REASON", limit=60),
]


def _destination_rows(dests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in dests:
        receipt = d["receipt"] or {}
        digest = receipt.get("sha256")
        rows.append(
            {
                **d,
                "via": d["via"] or "(here)",
                "receipt_at": receipt.get("at"),
                "sha256": f"{digest[:16]}…" if digest else None,
            }
        )
    return rows


@main.group("inbox")
def inbox_group() -> None:
    """Documents delivered to this site."""


@inbox_group.command("list")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
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
        _fail(EXIT_FILES, str(exc))


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
        _fail(EXIT_USAGE, f"no delivered document {message_id}")
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
        _fail(EXIT_USAGE, f"no delivered document {message_id}")

    async def go(ctx: SiteContext) -> None:
        await ctx.store.inbound_set(
            message_id, InState.ACKED, reason="operator ack", now=datetime.now(UTC)
        )

    with_site(directory, go)


@main.group("queue")
def queue_group() -> None:
    """The outbound queue, like mailq."""


@queue_group.command("list")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "every", is_flag=True, help="Every delivery, done ones included.")
@click.option("--peer", default=None, help="Only deliveries to this next hop.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in OutState]),
    default=None,
    help="Only deliveries in this state, done or not.",
)
@one_line_errors
def queue_list(
    directory: Path | None, as_json: bool, every: bool, peer: str | None, state: str | None
) -> None:
    """What is still to do, one delivery a line (like mailq): every delivery not yet
    delivered (queued, sending, deferred, held, failed: held and failed ones wait for
    the operator), and each message sent from here that is forwarded but still
    awaiting its receipt. Done here, and shown only with --all: delivered ones, and
    a message relayed for another site once forwarded on. --json gives the same rows
    with reasons whole (the table cuts them with "…"). Documents received here and not
    delivered yet (a receipt deferred) are named on stderr: valise inbox list."""
    from gateway.cli.views import QUEUE_COLUMNS, queue_rows, received_summary

    async def go(ctx: SiteContext) -> tuple[list[dict[str, Any]], str | None]:
        rows = await queue_rows(ctx, every=every, peer=peer, state=state)
        return rows, await received_summary(ctx)

    rows, waiting = with_site(directory, go)
    emit(rows, as_json, QUEUE_COLUMNS)
    if not rows and not every and state is None and not as_json:
        click.echo("valise: nothing to do (--all shows what is done)", err=True)
    if waiting is not None:
        click.echo(f"valise: {printable(waiting)}", err=True)
