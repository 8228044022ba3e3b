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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from crypto.keys import VerifyKey
from envelope.head import ParsedHead, serialize_trace
from envelope.model import HopRecord
from envelope.values import format_time
from routing.directory import Directory, DirectoryError

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
