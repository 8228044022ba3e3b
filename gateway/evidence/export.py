"""Evidence bundles: the export (``valise evidence export ID --out DIR``).

The layout, names and format rules are in gateway/evidence/layout.py."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crypto.errors import CryptoError, DecryptionError
from crypto.keys import DecryptionKey, VerifyKey
from crypto.recipes import open_segment, part_key, unwrap
from crypto.tsa_verify import TokenInfo, verify_token
from envelope.digested import digested_bytes
from envelope.errors import EnvelopeError
from envelope.framing import MAGIC
from envelope.head import ParsedHead
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_NAME, Receipt, parse_receipt
from envelope.seal import wrap_info
from envelope.sealed import parse_sealed
from envelope.values import format_time
from gateway.evidence.copies import add_copies
from gateway.evidence.layout import (
    CA,
    DESTINATIONS,
    DIRECTORIES,
    ENVELOPE,
    ENVELOPE_DIGESTED,
    EXPLANATION,
    FORMAT,
    HISTORY,
    HOPS,
    KEYS,
    MANIFEST,
    OPENSSL_FILES,
    RECEIPTS,
    SITE_RE,
    TIMESTAMPS,
    TRUST,
    EvidenceError,
    Exported,
    OutputNotEmpty,
    ReceiptFiles,
    UnknownMessage,
    copy_files,
    hop_files,
    in_force,
    involved_sites,
    openssl_files,
    pem_body,
    public_keys,
    receipt_files,
    sha256_file,
    signed_moments,
    token_data,
    tsa_name,
)
from gateway.evidence.text import explain
from gateway.site.context import SiteContext, archived_directories
from gateway.site.export_dir import ExportDir
from gateway.store.base import Destination, TimestampRecord, Transition
from routing.directory import Directory, DirectoryError, parse_directory


@dataclass
class _Draft:
    """The files of a bundle being assembled, and what the explanation will say."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tokens: list[tuple[str, TimestampRecord, TokenInfo]] = field(default_factory=list)
    receipt_docs: dict[str, Receipt] = field(default_factory=dict)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputNotEmpty(f"{out} exists and is not an empty folder; refusing to overwrite")


def _parse(data: bytes, what: str) -> ParsedHead:
    try:
        return parse_framed_head(data)[0]
    except EnvelopeError as exc:
        raise EvidenceError(f"the stored {what} is damaged: {exc}") from None


def _directories(ctx: SiteContext, moments: Sequence[datetime]) -> list[Directory]:
    """The archived versions in force at ``moments``, and the current one."""
    held: dict[int, Directory] = {ctx.directory.serial: ctx.directory}
    for serial, path in archived_directories(ctx.config.directory):
        try:
            held.setdefault(serial, parse_directory(path.read_bytes(), ctx.trust))
        except (DirectoryError, OSError):
            continue  # a damaged archive copy proves nothing; the others may
    chosen = {ctx.directory.serial}
    for moment in moments:
        d = in_force(held.values(), moment)
        if d is not None:
            chosen.add(d.serial)
    return [held[s] for s in sorted(chosen)]


def _signer(directories: Sequence[Directory], parsed: ParsedHead) -> VerifyKey | None:
    """The origin's key named by the signature, from the directory in force at creation."""
    r = parsed.head.routing
    d = in_force(directories, r.created) or max(directories, key=lambda d: d.serial)
    try:
        return d.site(r.origin).verify_keys().get(parsed.head.signature_key_id)
    except DirectoryError:
        return None


def _open_receipt(
    data: bytes, parsed: ParsedHead, here: str, key: DecryptionKey
) -> tuple[bytes, bytes, Receipt]:
    """Unwrap the receipt envelope's content key with this site's key and decrypt its
    one part: (content key, receipt.xml, parsed receipt). Raises EvidenceError."""
    head = parsed.head
    stanza = next((s for s in head.recipients if s.site == here and s.key_id == key.key_id), None)
    if stanza is None:
        raise EvidenceError(f"the receipt is not addressed to this site's key {key.key_id}")
    sealed_len = head.manifest.sealed_header.length
    try:
        _, offset = parse_framed_head(data)
        info = wrap_info(head.routing.message_id, here, key.key_id)
        content_key = unwrap(stanza.wrapped, key, info)
        sealed_xml = open_segment(part_key(content_key, 0), data[offset : offset + sealed_len])
        sealed = parse_sealed(sealed_xml)
        names = [p.name for p in sealed.parts]
        if len(head.manifest.parts) != 1 or names != [RECEIPT_NAME]:
            raise EvidenceError("the receipt envelope does not hold one receipt.xml")
        start = offset + sealed_len
        part = data[start : start + head.manifest.parts[0].length]
        document = open_segment(part_key(content_key, 1), part)
        return content_key, document, parse_receipt(document)
    except (DecryptionError, EnvelopeError) as exc:
        raise EvidenceError(f"the receipt could not be opened here: {exc}") from None


def _add_tokens(
    draft: _Draft, records: Sequence[TimestampRecord], ca: bytes | None, digests: dict[bytes, str]
) -> None:
    """Add the tokens that verify over what their kind names in this bundle: sent and
    relayed over envelope.digested, delivered over one receipt's (delivered-SITE)."""
    counts: dict[str, int] = {}
    receipt_stems = {
        receipt_files(site).digested: receipt_files(site).token
        for site in (
            n.removeprefix(f"{RECEIPTS}/").removesuffix(".digested") for n in digests.values()
        )
        if SITE_RE.fullmatch(site)
    }
    for rec in records:
        data_name = digests.get(rec.digest)
        stem = rec.kind if rec.kind in ("sent", "relayed") else None
        if rec.kind == "delivered" and data_name is not None:
            stem = receipt_stems.get(data_name)
        if data_name is None or stem is None or token_data(f"{stem}.tsr") != data_name:
            held = f"{len(receipt_stems)} receipt(s)" if receipt_stems else "no receipt"
            draft.notes.append(
                f"the {rec.kind} time-stamp token over digest {rec.digest.hex()[:16]}… is not "
                f"over what its kind names in this bundle (which holds {held}); it was left "
                "out (the origin's bundle holds the receipts a 'delivered' token stamps)"
            )
            continue
        if ca is None:
            draft.notes.append(f"the {rec.kind} token was left out: this site has no keys/ca.crt")
            continue
        try:
            info = verify_token(rec.token, rec.digest, ca)
        except CryptoError as exc:
            draft.notes.append(f"the {rec.kind} token does not verify ({exc}); it was left out")
            continue
        counts[stem] = counts.get(stem, 0) + 1
        n = counts[stem]
        sep = "." if stem.startswith("delivered-") else "-"
        name = f"{TIMESTAMPS}/{stem}{'' if n == 1 else f'{sep}{n}'}.tsr"
        draft.files[name] = rec.token
        draft.tokens.append((name, rec, info))


def _ack_site(ack: bytes) -> str:
    """The site named by a stored hop acknowledgement (``peer`` if it names none)."""
    try:
        site = json.loads(ack).get("site")
    except (ValueError, AttributeError):
        return "peer"
    return site if isinstance(site, str) and SITE_RE.fullmatch(site) else "peer"


def _history(transitions: Sequence[Transition]) -> bytes:
    rows = [
        {"at": t.at.isoformat(), "peer": t.peer, "state": t.state, "reason": t.reason}
        for t in transitions
    ]
    return json.dumps(rows, indent=2).encode() + b"\n"


async def _receipts(
    ctx: SiteContext, message_id: str, message: ParsedHead, draft: _Draft
) -> list[tuple[ReceiptFiles, bytes, ParsedHead]]:
    """The receipt envelopes this site holds for ``message_id``, one per destination
    (issue 11): each destination row's receipt, or, for mail with no rows here, the
    one receipt stored before schema v11 (filed under its signer). A receipt sealed
    here gets its next hop's signed acknowledgement instead (hops/ack-SITE.json)."""
    r = message.head.routing
    found: list[tuple[ReceiptFiles, bytes, ParsedHead]] = []
    relayed = []
    for d in await ctx.store.destinations(message_id):
        if d.receipt_at is None:
            continue
        data = await ctx.store.destination_receipt(message_id, d.site)
        if data is None or not data.startswith(MAGIC):
            relayed.append(d.site)  # the hub: it passed here, sealed; the origin keeps it
            continue
        found.append((receipt_files(d.site), data, _parse(data, f"receipt of {d.site}")))
    stored = await ctx.store.receipt(message_id)
    if r.doc_class == RECEIPT_CLASS:
        if stored is not None:
            # A receipt sealed here: the next hop's signed acknowledgement is its proof.
            draft.files[f"{HOPS}/ack-{_ack_site(stored)}.json"] = stored
        return []
    if not found and stored is not None and stored.startswith(MAGIC):
        parsed = _parse(stored, "receipt")
        signer = parsed.head.routing.origin
        if SITE_RE.fullmatch(signer):
            found.append((receipt_files(signer), stored, parsed))
    if relayed:
        draft.notes.append(
            f"the receipts of {', '.join(relayed)} passed this site sealed to {r.origin}: "
            "only the origin's bundle holds them"
        )
    if r.origin == ctx.here:
        held = {n.site for n, _, _ in found}
        missing = [s for s in r.destinations if s not in held]
        if missing and not found:
            draft.notes.append("no delivery receipt has been recorded here for this message")
        elif missing:
            draft.notes.append(
                f"no delivery receipt has been recorded here from {', '.join(missing)}"
            )
    return found


def _destinations_json(
    dests: Sequence[Destination], receipts: Sequence[tuple[ReceiptFiles, bytes, ParsedHead]]
) -> bytes:
    digests = {n.site: p.digest for n, _, p in receipts}
    rows = {
        d.site: {
            "state": d.state,
            "via": d.hop,
            "reason": d.reason,
            "receipt_at": format_time(d.receipt_at) if d.receipt_at else None,
            "receipt_sha256": (d.receipt_digest or digests.get(d.site) or b"").hex() or None,
        }
        for d in dests
    }
    return json.dumps(rows, indent=2, sort_keys=True).encode() + b"\n"


async def export_evidence(
    ctx: SiteContext, message_id: str, out: Path, *, now: datetime
) -> Exported:
    """Write the evidence bundle of ``message_id`` to the new or empty folder ``out``.

    Raises :class:`UnknownMessage`, :class:`OutputNotEmpty`, :class:`EvidenceError`
    (a stored piece is damaged) or OSError.
    """

    _check_out(out)
    record = await ctx.store.get_envelope(message_id)
    if record is None:
        raise UnknownMessage(f"no envelope {message_id} in this site's store")
    message = _parse(record.data, "envelope")
    draft = _Draft()
    f = draft.files
    f[ENVELOPE] = record.data
    f[ENVELOPE_DIGESTED] = digested_bytes(message)
    f.update(hop_files("message", message.head.trace))

    receipts = await _receipts(ctx, message_id, message, draft)
    parsed_receipts = [p for _, _, p in receipts]

    directories = _directories(ctx, signed_moments(message, *parsed_receipts))
    for d in directories:
        f[f"{DIRECTORIES}/{d.serial}.xml"] = d.raw
    f[TRUST] = (ctx.config.keys_dir / "directory.pub").read_bytes()
    f[KEYS] = (
        json.dumps(
            public_keys(directories, involved_sites(message, *parsed_receipts)), indent=2
        ).encode()
        + b"\n"
    )
    signed: list[tuple[str, tuple[str, str, str], ParsedHead]] = [
        ("envelope", OPENSSL_FILES["envelope"], message)
    ]
    signed += [(f"receipt of {n.site}", n.openssl, p) for n, _, p in receipts]
    for kind, ossl, parsed in signed:
        signer = _signer(directories, parsed)
        if signer is None:
            draft.notes.append(f"the {kind}'s signing key is not in the directory in force")
        else:
            f.update(openssl_files(ossl, parsed, signer))

    digests = {message.digest: ENVELOPE_DIGESTED}
    for names, data, parsed in receipts:
        f[names.vlz] = data
        f[names.digested] = digested_bytes(parsed)
        f.update(hop_files(names.hop_prefix, parsed.head.trace, names.hop_sep))
        digests[parsed.digest] = names.digested
        try:
            content_key, document, doc = _open_receipt(data, parsed, ctx.here, ctx.keys.decryption)
            f[names.xml] = document
            f[names.key] = content_key.hex().encode() + b"\n"
            draft.receipt_docs[names.site or ""] = doc
        except EvidenceError as exc:
            draft.notes.append(f"{names.site}'s receipt: {exc}; {names.xml} is not in the bundle")
    opened = [
        (names, opened_doc)
        for names, _, _ in receipts
        if (opened_doc := draft.receipt_docs.get(names.site or "")) is not None
    ]
    copies = await add_copies(ctx, message, opened, f, draft.notes)
    for names, _ in opened:
        if names.xml not in f:  # withheld: it names a copy the bundle cannot show
            draft.receipt_docs.pop(names.site or "", None)

    ca_path = ctx.config.keys_dir / "ca.crt"
    ca = ca_path.read_bytes() if ca_path.exists() else None
    if ca is not None:
        f[CA] = ca
    _add_tokens(draft, await ctx.store.timestamps(message_id), ca, digests)
    tsa_path = ctx.config.keys_dir / "tsa.crt"
    certs = [tsa_path.read_bytes()] if tsa_path.exists() else []
    for _, _, info in draft.tokens:
        if pem_body(info.tsa_certificate) not in {pem_body(c) for c in certs}:
            certs.append(info.tsa_certificate)
    for n, cert in enumerate(certs, start=1):
        f[tsa_name(n)] = cert
    f[HISTORY] = _history(await ctx.store.history(message_id))
    f[DESTINATIONS] = _destinations_json(await ctx.store.destinations(message_id), receipts)

    f[EXPLANATION] = explain(
        here=ctx.here,
        now=now,
        message=message,
        receipts=[(n, p, draft.receipt_docs.get(n.site or "")) for n, _, p in receipts],
        copies={c.digest: copy_files(c.digest)[0] for c in copies},
        directories=directories,
        tokens=[(name, rec.kind, info) for name, rec, info in draft.tokens],
        history=await ctx.store.history(message_id),
        files=f,
        notes=draft.notes,
    ).encode()
    manifest = {
        "format": FORMAT,
        "message": message_id,
        "site": ctx.here,
        "exported": format_time(now),
        "files": {name: sha256_file(data) for name, data in sorted(f.items())},
    }
    f[MANIFEST] = json.dumps(manifest, indent=2).encode() + b"\n"
    _write(out, f)
    return Exported(out, message_id, tuple(sorted(f)), tuple(draft.notes))


def _write(out: Path, files: dict[str, bytes]) -> None:
    """Write into a fresh private staging folder beside ``out`` (mkdtemp: 0700, a
    name nobody can plant first), each file created new (gateway/site/export_dir.py), then
    rename it to ``out`` (which must be absent or an empty folder: renaming over a
    non-empty one fails, and over a link to one too)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        folders: dict[str, ExportDir] = {}
        try:
            for name, data in files.items():
                sub, _, base = name.rpartition("/")
                if sub not in folders:
                    folders[sub] = ExportDir(staging / sub if sub else staging)
                folders[sub].write(base, data)
        finally:
            for folder in folders.values():
                folder.close()
        _check_out(out)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
