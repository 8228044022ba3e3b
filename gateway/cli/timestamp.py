"""``valise timestamp``: the RFC 3161 tokens a site holds for a message.

timestamp list   ID [--json]        the tokens stored for ID (kind, time, digest)
timestamp export ID --out DIR       each token with the bytes it stamps, for openssl

``export`` writes into DIR (made if need be; files of the same name are replaced):
``data.bin``, the bytes the message's envelope digest covers (envelope/digested.py);
``KIND.tsr`` per token (``sent``, ``relayed``, ``delivered``: DER TimeStampToken; a
second token of a kind is ``KIND-2.tsr``); ``KIND.data.bin`` beside a token over other
bytes than data.bin (the ``delivered`` token stamps the receipt's digest); ``ca.crt``,
the HQ site CA; and ``README`` with the exact ``openssl ts -verify`` command per token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import click

from envelope.digested import digested
from envelope.errors import EnvelopeError
from envelope.values import format_time
from gateway.cli.app import ExitCode, fail, one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, with_site
from gateway.site.context import SiteContext
from gateway.site.export_dir import ExportDir
from gateway.store.base import TimestampRecord

DATA = "data.bin"
CA = "ca.crt"
README = "README"


@click.group("timestamp")
def timestamp_group() -> None:
    """RFC 3161 time-stamp tokens kept with messages."""


@dataclass(frozen=True)
class _Held:
    records: list[TimestampRecord]
    envelope: bytes | None  # the digested bytes of the message's own envelope, if stored
    digest: bytes | None
    ca_pem: bytes


async def _held(ctx: SiteContext, message_id: str) -> _Held:
    records = await ctx.store.timestamps(message_id)
    record = await ctx.store.get_envelope(message_id)
    own: bytes | None = None
    digest: bytes | None = None
    if record is not None:
        digest = record.digest
        try:
            own = digested(record.data).data
        except EnvelopeError:
            own = None
    return _Held(records, own, digest, ctx.tls.ca_pem)


def _command(data: str, token: str) -> str:
    return f"openssl ts -verify -data {data} -in {token} -token_in -CAfile {CA}"


@timestamp_group.command("list")
@click.argument("message_id")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def timestamp_list(message_id: str, directory: Path | None, as_json: bool) -> None:
    """The tokens stored here for MESSAGE_ID."""
    held = with_site(directory, lambda ctx: _held(ctx, message_id))
    rows = [
        {
            "kind": r.kind,
            "at": format_time(r.at),
            "digest": r.digest.hex(),
            "bytes": len(r.token),
        }
        for r in held.records
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    emit(rows, False, [("kind", "KIND", 11), ("at", "STORED", 22), ("digest", "DIGEST", 66)])


@timestamp_group.command("export")
@click.argument("message_id")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@DIR_OPTION
@one_line_errors
def timestamp_export(message_id: str, out: Path, directory: Path | None) -> None:
    """Write MESSAGE_ID's tokens, the bytes they stamp and the CA into --out, for
    ``openssl ts -verify`` (the commands are in --out/README)."""
    held = with_site(directory, lambda ctx: _held(ctx, message_id))
    if not held.records:
        fail(ExitCode.USAGE, f"no time-stamp tokens are stored here for {message_id}")
    files: dict[str, bytes] = {CA: held.ca_pem}
    commands: list[str] = []
    if held.envelope is not None:
        files[DATA] = held.envelope
    seen: dict[str, int] = {}
    for r in held.records:
        seen[r.kind] = seen.get(r.kind, 0) + 1
        name = r.kind if seen[r.kind] == 1 else f"{r.kind}-{seen[r.kind]}"
        data_name = _data_for(r, held, name, files)
        if data_name is None:
            click.echo(f"{name}.tsr: the bytes it stamps are not stored here", err=True)
        files[f"{name}.tsr"] = r.token
        if data_name is not None:
            commands.append(_command(data_name, f"{name}.tsr"))
    if not commands:
        fail(ExitCode.FILES, f"the bytes {message_id}'s tokens stamp are not stored here")
    files[README] = (
        f"Time-stamp tokens (RFC 3161) of message {message_id}.\n"
        'Verify each ("Verification: OK") in this folder with:\n\n'
        + "".join(f"    {c}\n" for c in commands)
    ).encode()
    with ExportDir(out) as folder:  # new files only, never through a link
        for name, content in files.items():
            folder.write(name, content)
    for c in commands:
        click.echo(c)


def _data_for(r: TimestampRecord, held: _Held, name: str, files: dict[str, bytes]) -> str | None:
    """The file (written into ``files``) holding the bytes token ``r`` stamps, or None."""
    if held.envelope is not None and held.digest == r.digest:
        return DATA
    if r.digested and hashlib.sha256(r.digested).digest() == r.digest:
        if files.get(DATA) == r.digested:
            return DATA
        if DATA not in files and r.kind != "delivered":
            files[DATA] = r.digested
            return DATA
        files[f"{name}.data.bin"] = r.digested
        return f"{name}.data.bin"
    return None
