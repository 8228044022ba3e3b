"""Evidence bundles: export everything that proves, offline, what became of one message.

``valise evidence ID --out DIR`` writes, for one message held in this site's store:

    MANIFEST.json        packing list: format, message id, site, export time, SHA-256 of
                         every other file (a check against damage, not a signature)
    EXPLANATION.txt      plain text: what was sent, when, by whom, to whom, what proves it,
                         and the exact openssl commands that check the pieces they can
    envelope.vlz         the envelope exactly as stored here (ciphertext only)
    envelope.digested    the byte range the envelope digest covers (SPEC 4.3): the bytes
                         of <signed>…</signed> ‖ <signature…>…</signature> of its head
    hops/message-NN-SITE.xml   each hop record of the envelope's trace, as in the head
    hops/receipt-NN-SITE.xml   each hop record of the receipt envelope's trace
    hops/ack-SITE.json   for a receipt sealed here: the next hop's signed acknowledgement
    receipts/SITE.vlz    each delivery receipt envelope the origin verified, one per
                         destination SITE that signed one (origin only)
    receipts/SITE.digested  its digested byte range (what its "delivered" token stamps)
    receipts/SITE.xml    the receipt document, opened with this site's key, and
    receipts/SITE.key    the receipt envelope's content key (hex): with it anyone can
                         check that SITE.xml is what the destination signed
    hops/receipt-SITE.NN-HOP.xml  each hop record of SITE's receipt envelope's trace
    copies/DIGEST.head   an earlier copy of the envelope that a receipt names (DIGEST: its
                         digest in hex), replaced here since by a re-seal or re-sign: its
                         framing prefix and head (the segments are envelope.vlz's), and
    copies/DIGEST.digested  its digested range (gateway/evidence/copies.py)
    destinations.json    this site's state of each destination (informative: not signed)
    timestamps/KIND.tsr  the RFC 3161 tokens (sent, relayed; KIND-2.tsr, ...) and
                         delivered-SITE.tsr (delivered-SITE.2.tsr, ...) over SITE's receipt
    directory/SERIAL.xml the signed directory versions in force at each signed moment,
                         and the current one; directory/directory.pub the trust anchor
    keys.json            the public keys (ids, states) of every site involved, per version
    certs/ca.crt         the HQ site CA; certs/tsa.crt (tsa-2.crt, ...) the certificates
                         of HQ's time-stamp authority: this site's, and each token's
    openssl/             the origin's (and each receipt's: receipt-SITE.*) signed bytes,
                         signatures and Ed25519 public keys in PEM, for
                         ``openssl pkeyutl -verify``
    history.json         this site's own log of the message (informative: not signed)

Rules:
- Nothing is re-signed or re-encoded: every piece is the stored bytes (or a byte range
  of them), so it proves what it proves by the signatures it already carries.
- The directory in force at a moment is the highest archived serial issued at or
  before it (DIR/directories/). The bundle holds the one in force when the message was
  created, at each hop and when the receipt was created, and the current one.
- The receipt's content key is disclosed only for a receipt envelope addressed to this
  site; a receipt envelope carries nothing but the receipt document, so this reveals
  nothing of the message itself. The message's own content key is never disclosed.
- Only time-stamp tokens that verify at export, over the digest of the envelope or of
  its receipt, are included; any other is named in EXPLANATION.txt and left out.
- Format ``valise-evidence/2`` (issue 11) holds one receipt per destination under
  receipts/; ``valise-evidence/3`` (review 11b) adds copies/, the earlier copies the
  receipts name. The verifier still reads ``valise-evidence/1`` bundles, whose one
  receipt is the top-level receipt.vlz (and its receipt.* / delivered.tsr files), and
  ``valise-evidence/2`` bundles (no copies/).
- A receipt naming an earlier copy of the envelope (re-sealed or re-signed here after
  that copy reached its destination) comes with that copy's head (store schema 12).
  Without it (a copy replaced before schema 12) the receipt's content is not disclosed:
  the bundle could not show that the digest it names was this message.
- The output folder must be new or empty; the bundle is written to a sibling staging
  folder and renamed into place, so a half-written bundle is never left at DIR.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crypto.errors import CryptoError, DecryptionError
from crypto.keys import DecryptionKey, VerifyKey
from crypto.recipes import open_segment, part_key, unwrap
from crypto.tsa_verify import TokenInfo, verify_token
from envelope.digested import digested_bytes
from envelope.errors import EnvelopeError
from envelope.framing import MAGIC
from envelope.head import ParsedHead, serialize_trace
from envelope.model import HopRecord
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_NAME, Receipt, parse_receipt
from envelope.seal import wrap_info
from envelope.sealed import parse_sealed
from envelope.values import format_time
from gateway.site.context import SiteContext, archived_directories
from gateway.site.export_dir import ExportDir
from gateway.store.base import Destination, TimestampRecord, Transition
from routing.directory import Directory, DirectoryError, parse_directory

FORMAT = "valise-evidence/3"
FORMAT_V2 = "valise-evidence/2"
FORMAT_V1 = "valise-evidence/1"
FORMATS = (FORMAT_V1, FORMAT_V2, FORMAT)
RECEIPTS = "receipts"
COPIES = "copies"
DESTINATIONS = "destinations.json"
MANIFEST = "MANIFEST.json"
EXPLANATION = "EXPLANATION.txt"
ENVELOPE = "envelope.vlz"
ENVELOPE_DIGESTED = "envelope.digested"
RECEIPT = "receipt.vlz"
RECEIPT_DIGESTED = "receipt.digested"
RECEIPT_XML = "receipt.xml"
RECEIPT_KEY = "receipt.key"
HOPS = "hops"
TIMESTAMPS = "timestamps"
DIRECTORIES = "directory"
TRUST = "directory/directory.pub"
KEYS = "keys.json"
CA = "certs/ca.crt"
TSA = "certs/tsa.crt"
TSA_NAME_RE = re.compile(r"tsa(?:-[1-9][0-9]*)?\.crt")
HISTORY = "history.json"
OPENSSL = "openssl"
# openssl/ files: the signed message, the raw signature and the signer's key, per envelope.
OPENSSL_FILES = {
    "envelope": ("openssl/envelope.signed", "openssl/envelope.sig", "openssl/envelope-signer.pem"),
    "receipt": ("openssl/receipt.signed", "openssl/receipt.sig", "openssl/receipt-signer.pem"),
}
# Which digested range each token kind stamps.
TOKEN_DATA = {
    "sent": ENVELOPE_DIGESTED,
    "relayed": ENVELOPE_DIGESTED,
    "delivered": RECEIPT_DIGESTED,
}
# RFC 8410: the SubjectPublicKeyInfo of an Ed25519 key is this prefix and the 32 raw bytes.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
SITE_RE = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
# delivered-SITE.tsr / delivered-SITE.N.tsr (v2); sent|relayed|delivered(-N).tsr (v1).
TOKEN_NAME_RE = re.compile(
    r"(?:(sent|relayed|delivered)(?:-([2-9]|[1-9][0-9]+))?"
    r"|delivered-([A-Z][A-Z0-9-]{1,31})(?:\.([2-9]|[1-9][0-9]+))?)\.tsr"
)


@dataclass(frozen=True)
class ReceiptFiles:
    """The file names of one receipt in a bundle. ``site`` is the destination it is
    filed under (v2: receipts/SITE.*); None for a v1 bundle's one top-level receipt,
    whose site is its signer."""

    site: str | None
    vlz: str
    digested: str
    xml: str
    key: str
    hop_prefix: str
    hop_sep: str
    openssl: tuple[str, str, str]
    token: str  # the token name stem: delivered-SITE (v2), delivered (v1)

    @property
    def label(self) -> str:
        return self.site or "receipt"


def receipt_files(site: str | None) -> ReceiptFiles:
    """The names of ``site``'s receipt (v2), or of a v1 bundle's one receipt (None)."""
    if site is None:
        return ReceiptFiles(
            None,
            RECEIPT,
            RECEIPT_DIGESTED,
            RECEIPT_XML,
            RECEIPT_KEY,
            "receipt",
            "-",
            OPENSSL_FILES["receipt"],
            "delivered",
        )
    # "." never appears in a site name: hops/receipt-M-HANOI.01-HQ.xml is M-HANOI's
    # receipt's first hop, never a site "M-HANOI-01"'s.
    return ReceiptFiles(
        site,
        f"{RECEIPTS}/{site}.vlz",
        f"{RECEIPTS}/{site}.digested",
        f"{RECEIPTS}/{site}.xml",
        f"{RECEIPTS}/{site}.key",
        f"receipt-{site}",
        ".",
        (
            f"{OPENSSL}/receipt-{site}.signed",
            f"{OPENSSL}/receipt-{site}.sig",
            f"{OPENSSL}/receipt-{site}-signer.pem",
        ),
        f"delivered-{site}",
    )


def copy_files(digest: bytes) -> tuple[str, str]:
    """copies/HEX.head and copies/HEX.digested of the earlier copy of digest ``digest``."""
    return f"{COPIES}/{digest.hex()}.head", f"{COPIES}/{digest.hex()}.digested"


def token_data(name: str) -> str | None:
    """The digested file a token named ``name`` (timestamps/NAME) stamps; None if the
    name is none of sent, relayed, delivered (v1) or delivered-SITE (v2)."""
    m = TOKEN_NAME_RE.fullmatch(name)
    if m is None:
        return None
    if m.group(3) is not None:
        return receipt_files(m.group(3)).digested
    return TOKEN_DATA[m.group(1)]


class EvidenceError(Exception):
    """An evidence bundle could not be made or read (one line of text)."""


class UnknownMessage(EvidenceError):
    """This site's store holds no envelope of that message id."""


class OutputNotEmpty(EvidenceError):
    """The --out folder exists and is not empty (a bundle never overwrites)."""


@dataclass(frozen=True)
class Exported:
    """What :func:`export_evidence` wrote, and what it could not include (``notes``)."""

    out: Path
    message_id: str
    files: tuple[str, ...]
    notes: tuple[str, ...] = ()


# -- pieces shared with the verifier ---------------------------------------------------


def hop_xml(hop: HopRecord) -> bytes:
    """One hop record as its <hop> element appears in the head's <trace>."""
    return serialize_trace((hop,)).removeprefix(b"<trace>").removesuffix(b"</trace>")


def hop_files(prefix: str, trace: Sequence[HopRecord], sep: str = "-") -> dict[str, bytes]:
    """hops/PREFIX{sep}NN-SITE.xml for each record of ``trace``, in order from 01."""
    return {
        f"{HOPS}/{prefix}{sep}{i:02d}-{hop.site}.xml": hop_xml(hop)
        for i, hop in enumerate(trace, start=1)
    }


def ed25519_pem(key: VerifyKey) -> bytes:
    """The key as an RFC 8410 SubjectPublicKeyInfo PEM (what openssl reads)."""
    der = base64.b64encode(ED25519_SPKI_PREFIX + key.raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{der}\n-----END PUBLIC KEY-----\n".encode()


def openssl_files(
    names: tuple[str, str, str], parsed: ParsedHead, signer: VerifyKey
) -> dict[str, bytes]:
    """The openssl/ files (``names``: signed, sig, pem) of one envelope: what
    ``openssl pkeyutl -verify -rawin`` checks."""
    signed, sig, pem = names
    return {signed: parsed.signed_message, sig: parsed.head.signature, pem: ed25519_pem(signer)}


def in_force(directories: Iterable[Directory], moment: datetime) -> Directory | None:
    """The directory in force at ``moment``: the highest serial issued at or before it."""
    candidates = [d for d in directories if d.issued <= moment]
    return max(candidates, key=lambda d: d.serial, default=None)


def public_keys(directories: Iterable[Directory], sites: Iterable[str]) -> dict[str, Any]:
    """keys.json: per directory serial, the signing and encryption keys (id, state) of
    each of ``sites`` that it lists."""
    wanted = sorted(set(sites))
    out: dict[str, Any] = {}
    for d in sorted(directories, key=lambda d: d.serial):
        entries: dict[str, Any] = {}
        for site in wanted:
            try:
                e = d.site(site)
            except DirectoryError:
                continue
            entries[site] = {
                "status": "active" if e.active else "disabled",
                "signing": [{"id": k.key_id, "state": s.value} for k, s in e.signing],
                "encryption": [{"id": k.key_id, "state": s.value} for k, s in e.encryption],
            }
        out[str(d.serial)] = {"issued": format_time(d.issued), "sites": entries}
    return {"directories": out}


def involved_sites(message: ParsedHead, *receipts: ParsedHead | None) -> set[str]:
    """The origin, destinations and hop sites of the message and of its receipts."""
    heads = [message, *(r for r in receipts if r is not None)]
    sites: set[str] = set()
    for p in heads:
        r = p.head.routing
        sites |= {r.origin, *r.destinations, *(h.site for h in p.head.trace)}
    return sites


def signed_moments(message: ParsedHead, *receipts: ParsedHead | None) -> list[datetime]:
    """Every moment a signature in the bundle claims: creations and hop times."""
    heads = [message, *(r for r in receipts if r is not None)]
    return [t for p in heads for t in (p.head.routing.created, *(h.at for h in p.head.trace))]


def tsa_name(n: int) -> str:
    """certs/tsa.crt for the first TSA certificate, certs/tsa-N.crt for the Nth."""
    return TSA if n == 1 else f"certs/tsa-{n}.crt"


def pem_body(pem: bytes) -> bytes:
    """The base64 body of a PEM block without line breaks (to compare certificates)."""
    lines = [line.strip() for line in pem.splitlines()]
    return b"".join(line for line in lines if line and not line.startswith(b"-----"))


def sha256_file(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- export ----------------------------------------------------------------------------


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
    from gateway.evidence.copies import add_copies
    from gateway.evidence.text import explain

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
