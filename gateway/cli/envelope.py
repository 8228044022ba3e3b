"""``valise seal | open | inspect``: envelopes as files, offline (no site, no store).

seal --keys DIR --to SITE.pub.xml ... --in FILE ... --out ENVELOPE   seal files for sites
open --keys DIR --from SITE.pub.xml --in ENVELOPE --out-dir DIR      verify and decrypt
inspect ENVELOPE [--json]                                            the routing header
"""

from __future__ import annotations

import json
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from config.site import read_key_passphrase
from envelope.errors import UsageError
from envelope.head import ParsedHead
from envelope.seal import Recipient, new_routing
from envelope.values import Priority, check_doc_class, check_dossier, format_time
from gateway.cli.app import one_line_errors
from gateway.cli.common import JSON_MACHINE
from gateway.relay.envelope_io import InputPart, inspect_file, open_to_dir, seal_to_file
from gateway.site.keystore import load_public_doc, load_site_keys


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


@click.command("seal")
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


@click.command("open")
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


@click.command("inspect")
@click.argument("envelope", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@JSON_MACHINE
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
