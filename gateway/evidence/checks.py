"""The checks of an evidence bundle, one function each (run by gateway/evidence/verify.py).

Each check reads only the bundle's files through :class:`BundleState`, records what it
established there for the checks after it, and returns one line saying what it proved;
it raises :class:`Failed` (the reason) or :class:`Skipped` (the piece is not in the
bundle). The rules they enforce are stated in gateway/evidence/verify.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from crypto.recipes import open_segment, part_key, verify
from crypto.tsa_verify import TokenInfo, verify_token
from envelope.digested import digested_bytes
from envelope.head import ParsedHead
from envelope.open import parse_framed_head, verify_origin
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, parse_receipt
from envelope.sealed import parse_sealed
from envelope.trace import TraceSpliced, check_path, hop_message
from envelope.values import format_time, parse_time
from gateway.evidence.layout import (
    CA,
    COPIES,
    DIRECTORIES,
    ENVELOPE,
    ENVELOPE_DIGESTED,
    FORMAT_V1,
    FORMATS,
    HOPS,
    KEYS,
    MANIFEST,
    OPENSSL_FILES,
    RECEIPT,
    RECEIPTS,
    SITE_RE,
    TIMESTAMPS,
    TOKEN_NAME_RE,
    TRUST,
    TSA_NAME_RE,
    ReceiptFiles,
    hop_files,
    in_force,
    involved_sites,
    openssl_files,
    pem_body,
    public_keys,
    receipt_files,
    token_data,
)
from gateway.evidence.text import gen_time
from gateway.relay.hop import verify_hop_ack
from routing.directory import Directory, DirectoryError, parse_directory

MAX_FILE_BYTES = 1 << 30  # no bundle piece is read beyond this
__all__ = ["TOKEN_NAME_RE"]  # re-exported for gateway/evidence/times.py


class Failed(Exception):
    """This check failed, for the reason given."""


class Skipped(Exception):
    """This check does not apply: the piece is not in the bundle."""


@dataclass
class BundleState:
    """What the checks so far established, for the checks after them."""

    folder: Path
    trust_pin: VerifyKey | None
    ca_pin: bytes | None
    manifest_id: str | None = None
    trust: VerifyKey | None = None
    directories: list[Directory] = field(default_factory=list)
    format: str | None = None
    message: ParsedHead | None = None
    message_data: bytes = b""
    # The receipts that verified, by their signer (a destination): head, bytes, names.
    receipts: dict[str, tuple[ParsedHead, bytes, ReceiptFiles]] = field(default_factory=dict)
    proved: set[str] = field(default_factory=set)  # receipt-content ok: delivery proven
    refused: set[str] = field(default_factory=set)  # sites whose receipt files failed
    # Earlier copies of the envelope that verified (gateway/evidence/copies.py): their
    # digest -> copies/HEX.head. A receipt naming one proves delivery of this message.
    copies: dict[bytes, str] = field(default_factory=dict)
    copy_heads: list[ParsedHead] = field(default_factory=list)
    # Which copy each proved site's receipt names, when not the envelope itself.
    proved_copy: dict[str, str] = field(default_factory=dict)
    tokens: list[tuple[str, TokenInfo]] = field(default_factory=list)

    @property
    def receipt_heads(self) -> list[ParsedHead]:
        return [p for p, _, _ in self.receipts.values()]

    def verified(self, names: ReceiptFiles) -> tuple[str, ParsedHead, bytes] | None:
        """The signer, head and bytes of the receipt filed as ``names``, if it verified."""
        for site, (parsed, data, n) in self.receipts.items():
            if n == names:
                return site, parsed, data
        return None

    def path(self, name: str) -> Path:
        return self.folder.joinpath(*PurePosixPath(name).parts)

    def has(self, name: str) -> bool:
        path = self.path(name)
        return path.is_file() and self._inside(path)

    def _inside(self, path: Path) -> bool:
        """Is ``path`` (symlinks followed) inside the bundle? Nothing outside is read."""
        return path.resolve().is_relative_to(self.folder.resolve())

    def read(self, name: str) -> bytes:
        path = self.path(name)
        if not path.is_file():
            raise Failed(f"{name} is missing")
        if not self._inside(path):
            raise Failed(f"{name} points outside the bundle")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Failed(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_bytes()

    def need_message(self) -> ParsedHead:
        if self.message is None:
            raise Failed(f"cannot check: {ENVELOPE} did not verify")
        return self.message

    def need_directories(self) -> list[Directory]:
        if not self.directories:
            raise Failed("cannot check: no directory in the bundle verified")
        return self.directories


def _safe_name(name: object) -> str:
    """A manifest path: relative, POSIX, inside the bundle. Raises Failed."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise Failed(f"MANIFEST.json lists a bad path {name!r}")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or any(p in ("..", ".") for p in parts) or name == MANIFEST:
        raise Failed(f"MANIFEST.json lists a path outside the bundle: {name!r}")
    return name


def _bundle_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()
    } - {MANIFEST}


def check_manifest(s: BundleState) -> str:
    try:
        manifest = json.loads(s.read(MANIFEST))
    except ValueError:
        raise Failed("MANIFEST.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise Failed(f"MANIFEST.json is not a {' or '.join(reversed(FORMATS))} manifest")
    s.format = manifest["format"]
    message, files = manifest.get("message"), manifest.get("files")
    if not isinstance(message, str) or not isinstance(files, dict):
        raise Failed("MANIFEST.json has no message id or no file list")
    s.manifest_id = message
    problems = []
    for name, digest in files.items():
        name = _safe_name(name)
        if not s.has(name):
            problems.append(f"{name} is listed but missing")
        elif not isinstance(digest, str) or not hmac.compare_digest(
            hashlib.sha256(s.read(name)).hexdigest(), digest
        ):
            problems.append(f"{name} does not match its SHA-256 in MANIFEST.json")
    problems += [
        f"{name} is not listed in MANIFEST.json"
        for name in sorted(_bundle_files(s.folder) - set(files))
    ]
    if problems:
        raise Failed(
            "; ".join(problems[:3])
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        )
    return f"{len(files)} files, every SHA-256 matches"


def check_trust(s: BundleState) -> str:
    try:
        raw = base64.b64decode(s.read(TRUST).strip(), validate=True)
        trust = VerifyKey.from_bytes(raw)
    except (ValueError, CryptoError):
        raise Failed(f"{TRUST} is not a base64 Ed25519 public key") from None
    if s.trust_pin is not None and s.trust_pin.raw != trust.raw:
        s.trust = s.trust_pin  # the directories are then checked under the key given
        raise Failed(
            f"{TRUST} ({trust.key_id}) is not the trust anchor given ({s.trust_pin.key_id})"
        )
    s.trust = trust
    how = (
        "matches the one given"
        if s.trust_pin is not None
        else "the bundle's copy: compare it with HQ's"
    )
    return f"HQ directory key {trust.key_id} ({how})"


def check_directories(s: BundleState) -> str:
    if s.trust is None:
        raise Failed("cannot check: no trust anchor")
    folder = s.path(DIRECTORIES)
    names = sorted(p.name for p in folder.glob("*.xml")) if folder.is_dir() else []
    if not names:
        raise Failed(f"no {DIRECTORIES}/SERIAL.xml in the bundle")
    problems = []
    for name in names:
        try:
            d = parse_directory(s.read(f"{DIRECTORIES}/{name}"), s.trust)
        except DirectoryError as exc:
            problems.append(f"{DIRECTORIES}/{name}: {exc}")
            continue
        if name != f"{d.serial}.xml":
            problems.append(f"{DIRECTORIES}/{name} holds serial {d.serial}")
            continue
        s.directories.append(d)
    if problems:
        raise Failed("; ".join(problems))
    return (
        "serials "
        + ", ".join(str(d.serial) for d in s.directories)
        + " verify under the trust anchor"
    )


def _segments_match(data: bytes, parsed: ParsedHead, offset: int, what: str) -> None:
    manifest = parsed.head.manifest
    if len(data) != offset + manifest.total_length:
        raise Failed(
            f"{what} is truncated"
            if len(data) < offset + manifest.total_length
            else f"{what} is followed by trailing data"
        )
    for i, segment in enumerate(manifest.segments):
        if not hmac.compare_digest(
            hashlib.sha256(data[offset : offset + segment.length]).digest(), segment.sha256
        ):
            raise Failed(f"{what}: ciphertext segment {i} does not match the signed manifest")
        offset += segment.length


def check_envelope(s: BundleState) -> str:
    data = s.read(ENVELOPE)
    parsed, offset = parse_framed_head(data)
    r = parsed.head.routing
    if s.manifest_id is not None and r.message_id != s.manifest_id:
        raise Failed(f"{ENVELOPE} is message {r.message_id}, not {s.manifest_id}")
    _segments_match(data, parsed, offset, ENVELOPE)
    if s.read(ENVELOPE_DIGESTED) != digested_bytes(parsed):
        raise Failed(f"{ENVELOPE_DIGESTED} is not the digested range of {ENVELOPE}'s head")
    s.message, s.message_data = parsed, data
    to = ", ".join(r.destinations)
    return f"message {r.message_id} from {r.origin} to {to}, digest {parsed.digest.hex()}"


def _key_at(
    s: BundleState, site: str, key_id: str, moment: datetime, what: str
) -> tuple[VerifyKey, Directory]:
    d = in_force(s.need_directories(), moment)
    if d is None:
        raise Failed(f"{what}: no directory in the bundle was in force at {format_time(moment)}")
    try:
        key = d.site(site).verify_keys().get(key_id)
    except DirectoryError as exc:
        raise Failed(f"{what}: {exc}") from None
    if key is None:
        raise Failed(
            f"{what}: key {key_id} is not an active or retiring key of {site} "
            f"in directory serial {d.serial}"
        )
    return key, d


def check_origin(s: BundleState) -> str:
    m = s.need_message()
    r = m.head.routing
    key, d = _key_at(s, r.origin, m.head.signature_key_id, r.created, "origin signature")
    verify_origin(m, key)
    return (
        f"signed by {r.origin} with key {key.key_id} "
        f"(directory serial {d.serial}, in force at {format_time(r.created)})"
    )


def _verify_trace(s: BundleState, parsed: ParsedHead, prefix: str, sep: str = "-") -> list[str]:
    trace = parsed.head.trace
    try:
        check_path(parsed.head.routing.origin, trace)
    except TraceSpliced as exc:
        raise Failed(f"{prefix} trace: {exc}") from None
    for i, hop in enumerate(trace):
        key, _ = _key_at(s, hop.site, hop.key_id, hop.at, f"{prefix} hop {i + 1} ({hop.site})")
        previous = trace[i - 1].signature if i else parsed.head.signature
        try:
            verify(key, hop.signature, hop_message(parsed, hop, previous))
        except CryptoError:
            raise Failed(
                f"{prefix} hop {i + 1} ({hop.site}): the signature does not verify"
            ) from None
    expected = hop_files(prefix, trace, sep)
    folder = s.path(HOPS)
    present = (
        {f"{HOPS}/{p.name}" for p in folder.glob(f"{prefix}{sep}*.xml")}
        if folder.is_dir()
        else set()
    )
    if present != set(expected):
        raise Failed(
            f"{HOPS}/{prefix}-*.xml are not the {len(trace)} hop record(s) of the {prefix}'s trace"
        )
    for name, xml in expected.items():
        if s.read(name) != xml:
            raise Failed(f"{name} is not the hop record in the {prefix}'s trace")
    return [f"{h.site} at {format_time(h.at)}" for h in trace]


def check_hops(s: BundleState) -> str:
    m = s.need_message()
    seen = _verify_trace(s, m, "message")
    for site, (parsed, _, names) in sorted(s.receipts.items()):
        label = "receipt" if names.site is None else f"{site}'s receipt"
        seen += [f"{label}: {x}" for x in _verify_trace(s, parsed, names.hop_prefix, names.hop_sep)]
    folder = s.path(HOPS)
    for ack_path in sorted(folder.glob("ack-*.json")) if folder.is_dir() else []:
        ack = json.loads(s.read(f"{HOPS}/{ack_path.name}"))
        site, at = str(ack.get("site", "")), str(ack.get("at", ""))
        moment = parse_time(at, "acknowledgement time")
        chain = m.head.trace[-1].signature if m.head.trace else m.head.signature
        key, _ = _key_at(s, site, str(ack.get("key", "")), moment, f"acknowledgement by {site}")
        verify_hop_ack(ack, m.digest, chain, {key.key_id: key})
        seen.append(f"acknowledged by {site} at {at}")
    if not seen:
        raise Skipped("no hop records in the bundle (the origin's copy carries none)")
    return "; ".join(seen)


def check_keys(s: BundleState) -> str:
    m = s.need_message()
    listed = json.loads(s.read(KEYS))
    sites = involved_sites(m, *s.receipt_heads)
    expected = public_keys(s.need_directories(), sites)
    if listed != expected:
        raise Failed(f"{KEYS} does not list the keys of the directories in the bundle")
    return f"{len(sites)} sites, as in the directories"


def receipt_slots(s: BundleState) -> list[ReceiptFiles]:
    """The receipts the bundle holds: receipts/SITE.vlz each (v2, v3), or the one top-level
    receipt.vlz of a v1 bundle. A bundle whose manifest did not say which format is
    read both ways."""
    slots = []
    if s.format in (FORMAT_V1, None) and s.has(RECEIPT):
        slots.append(receipt_files(None))
    folder = s.path(RECEIPTS)
    if s.format != FORMAT_V1 and folder.is_dir():
        for p in sorted(folder.glob("*.vlz")):
            site = p.name.removesuffix(".vlz")
            # A name that is no site still gets its checks: they fail, saying so.
            slots.append(receipt_files(site))
    return slots


def receipt_checks(s: BundleState) -> list[tuple[str, Callable[[BundleState], str]]]:
    """``receipt-signature[SITE]`` and ``receipt-content[SITE]`` per receipt (v1: one
    pair without [SITE]); with no receipt, the pair skipped (delivery not proven)."""
    slots = receipt_slots(s)
    if not slots:
        return [("receipt-signature", _no_receipt), ("receipt-content", _no_receipt_content)]
    out: list[tuple[str, Callable[[BundleState], str]]] = []
    for names in slots:
        tag = "" if names.site is None else f"[{names.site}]"
        out.append((f"receipt-signature{tag}", _signature_check(names)))
        out.append((f"receipt-content{tag}", _content_check(names)))
    return out


def _no_receipt(s: BundleState) -> str:
    if s.message is not None and s.message.head.routing.doc_class == RECEIPT_CLASS:
        raise Skipped("a receipt is not receipted: its hop acknowledgement is its proof")
    raise Skipped("no receipt in the bundle: delivery is not proven")


def _no_receipt_content(s: BundleState) -> str:
    raise Skipped("no receipt in the bundle")


def _refusing(
    names: ReceiptFiles, fn: Callable[[BundleState], str]
) -> Callable[[BundleState], str]:
    """``fn``, noting the site filed as ``names`` as refused when it does not pass."""

    def check(s: BundleState) -> str:
        try:
            return fn(s)
        except Skipped:
            raise
        except Exception:
            if names.site is not None:
                s.refused.add(names.site)
            raise

    return check


def _signature_check(names: ReceiptFiles) -> Callable[[BundleState], str]:
    def check(s: BundleState) -> str:
        vlz = names.vlz
        if names.site is not None and not SITE_RE.fullmatch(names.site):
            raise Failed(f"{vlz} is not named after a site (receipts/SITE.vlz)")
        m = s.need_message()
        data = s.read(vlz)
        parsed, offset = parse_framed_head(data)
        r, mr = parsed.head.routing, m.head.routing
        if r.doc_class != RECEIPT_CLASS:
            raise Failed(f"{vlz} is of class {r.doc_class}, not a receipt")
        if names.site is not None and r.origin != names.site:
            raise Failed(
                f"{vlz} is filed under {names.site} but signed by {r.origin}: "
                f"it proves nothing of {names.site}"
            )
        if r.origin not in mr.destinations:
            raise Failed(
                f"{vlz} is signed by {r.origin}, not a destination of the message "
                f"(destinations: {', '.join(mr.destinations)})"
            )
        if r.in_reply_to != mr.message_id:
            raise Failed(f"{vlz} answers message {r.in_reply_to}, not {mr.message_id}")
        if mr.origin not in r.destinations:
            raise Failed(
                f"{vlz} is addressed to {', '.join(r.destinations)}, not the origin {mr.origin}"
            )
        if r.origin in s.receipts:
            raise Failed(
                f"{vlz} is a second receipt from {r.origin} "
                f"(the first is {s.receipts[r.origin][2].vlz})"
            )
        _segments_match(data, parsed, offset, vlz)
        if s.read(names.digested) != digested_bytes(parsed):
            raise Failed(f"{names.digested} is not the digested range of {vlz}'s head")
        key, d = _key_at(s, r.origin, parsed.head.signature_key_id, r.created, "receipt signature")
        verify_origin(parsed, key)
        s.receipts[r.origin] = (parsed, data, names)
        return (
            f"receipt {r.message_id} signed by {r.origin} with key {key.key_id} "
            f"(directory serial {d.serial}) at {format_time(r.created)}"
        )

    return _refusing(names, check)


def _content_check(names: ReceiptFiles) -> Callable[[BundleState], str]:
    def check(s: BundleState) -> str:
        vlz, xml = names.vlz, names.xml
        if not s.has(xml) or not s.has(names.key):
            raise Skipped(
                "the receipt document was not disclosed: the digest it names is not checked"
            )
        got = s.verified(names)
        if got is None:
            raise Failed(f"cannot check: {vlz} did not verify")
        signer, parsed, receipt_data = got
        m = s.need_message()
        content_key = bytes.fromhex(s.read(names.key).decode("ascii").strip())
        if len(content_key) != 32:
            raise Failed(f"{names.key} is not a 32-byte content key in hex")
        _, offset = parse_framed_head(receipt_data)
        manifest = parsed.head.manifest
        sealed_len = manifest.sealed_header.length
        try:
            sealed = parse_sealed(
                open_segment(part_key(content_key, 0), receipt_data[offset : offset + sealed_len])
            )
            if len(manifest.parts) != 1 or [(p.name, p.media_type) for p in sealed.parts] != [
                (RECEIPT_NAME, RECEIPT_MEDIA_TYPE)
            ]:
                raise Failed(f"{vlz} does not hold one {RECEIPT_NAME}")
            start = offset + sealed_len
            plain = open_segment(
                part_key(content_key, 1), receipt_data[start : start + manifest.parts[0].length]
            )
        except CryptoError:
            raise Failed(f"{names.key} does not decrypt {vlz}") from None
        if plain != s.read(xml):
            raise Failed(f"{xml} is not the document the destination signed in {vlz}")
        doc = parse_receipt(plain)
        digest = hashlib.sha256(s.read(ENVELOPE_DIGESTED)).digest()
        if doc.message_id != m.head.routing.message_id:
            raise Failed(f"{xml} names message {doc.message_id}, not {m.head.routing.message_id}")
        if doc.site != signer:
            raise Failed(f"{xml} names site {doc.site}, not its signer {signer}")
        copy = s.copies.get(doc.envelope_digest)
        if not hmac.compare_digest(doc.envelope_digest, digest) and copy is None:
            raise Failed(
                f"{xml} names envelope digest {doc.envelope_digest.hex()}, "
                f"not SHA-256 of {ENVELOPE_DIGESTED} ({digest.hex()}) nor of an earlier "
                f"copy in {COPIES}/ that verified: it is a receipt for another envelope"
            )
        s.proved.add(signer)
        if copy is not None:
            s.proved_copy[signer] = copy
            return (
                f"{doc.site} received the earlier copy {copy} (envelope digest "
                f"{doc.envelope_digest.hex()}), re-sealed by the origin since, at "
                f"{format_time(doc.at)}"
            )
        return f"{doc.site} received envelope digest {digest.hex()} at {format_time(doc.at)}"

    return _refusing(names, check)


def check_delivery(s: BundleState) -> str:
    """Which destinations the bundle proves delivered: a receipt whose signature and
    content both verified. Sites without one are named, not failed: a bundle of a
    partial delivery is valid evidence of what it holds."""
    m = s.need_message()
    r = m.head.routing
    if r.doc_class == RECEIPT_CLASS:
        raise Skipped("a receipt is not receipted: its hop acknowledgement is its proof")
    states = destination_verdicts(s)
    proved = [d for d, v in states.items() if v == PROVED]
    said = []
    if proved:
        said.append("proved by receipt: " + ", ".join(proved))
    for verdict in (NO_RECEIPT, RECEIPT_REFUSED, NOT_DISCLOSED):
        sites = [d for d, v in states.items() if v == verdict]
        if sites:
            said.append(f"{verdict}: {', '.join(sites)}")
    text = "; ".join(said) + f" ({len(proved)} of {len(states)})"
    if s.proved_copy:
        text += "; " + ", ".join(
            f"{site} by its receipt of the earlier copy {copy}"
            for site, copy in sorted(s.proved_copy.items())
        )
    if not proved:
        raise Skipped(f"no destination's delivery is proven: {text}")
    return text


PROVED = "proved"
NO_RECEIPT = "no receipt"
RECEIPT_REFUSED = "receipt does not verify"
NOT_DISCLOSED = "receipt signed, content not disclosed"


def destination_verdicts(s: BundleState) -> dict[str, str]:
    """Each destination the signed envelope names: proved, no receipt, receipt does
    not verify, or receipt signed with its content not disclosed."""
    if s.message is None:
        return {}
    out = {}
    for d in s.message.head.routing.destinations:
        if d in s.proved:
            out[d] = PROVED
        elif d in s.refused:
            out[d] = RECEIPT_REFUSED
        elif d in s.receipts:
            out[d] = NOT_DISCLOSED
        else:
            out[d] = NO_RECEIPT
    return out


def token_check(name: str) -> Callable[[BundleState], str]:
    def check(s: BundleState) -> str:
        data_name = token_data(name)
        if data_name is None:
            raise Failed(
                f"{TIMESTAMPS}/{name} is not named KIND.tsr (sent, relayed, delivered-SITE)"
            )
        if data_name != ENVELOPE_DIGESTED and not any(
            n.digested == data_name for _, _, n in s.receipts.values()
        ):
            vlz = data_name.removesuffix(".digested") + ".vlz"
            raise Failed(f"cannot check: {vlz} did not verify")
        s.need_message()
        if not s.has(CA):
            raise Failed(f"cannot check: {CA} is missing")
        token, ca = s.read(f"{TIMESTAMPS}/{name}"), s.read(CA)
        digest = hashlib.sha256(s.read(data_name)).digest()
        # The token must verify on its own, with the certificate it carries, as the
        # openssl command in EXPLANATION.txt checks it.
        info = verify_token(token, digest, ca)
        s.tokens.append((f"{TIMESTAMPS}/{name}", info))
        return f"over {data_name}, genTime {gen_time(info)}, serial {info.serial}, chains to {CA}"

    return check


def check_certificates(s: BundleState) -> str:
    if not s.has(CA):
        raise Skipped(f"no {CA} in the bundle")
    ca = s.read(CA)
    said = []
    if s.ca_pin is not None:
        if pem_body(s.ca_pin) != pem_body(ca):
            raise Failed(f"{CA} is not the CA certificate given")
        said.append(f"{CA} matches the one given")
    folder = s.path("certs")
    names = sorted(p.name for p in folder.iterdir() if TSA_NAME_RE.fullmatch(p.name))
    certs = {pem_body(s.read(f"certs/{name}")): f"certs/{name}" for name in names}
    for token, info in s.tokens:
        if pem_body(info.tsa_certificate) not in certs:
            raise Failed(f"the certificate that signed {token} is not among certs/tsa*.crt")
    counts = Counter(certs[pem_body(info.tsa_certificate)] for _, info in s.tokens)
    said += [
        f"{name} signed {counts[name]} token(s) and chains to {CA}"
        if counts[name]
        else f"{name} signed no token in the bundle (not checked)"
        for name in certs.values()
    ]
    return "; ".join(said) or f"{CA} present (not compared with a known CA)"


def check_openssl(s: BundleState) -> str:
    m = s.need_message()
    done = []
    signed: list[tuple[str, str, tuple[str, str, str], ParsedHead]] = [
        ("envelope", ENVELOPE, OPENSSL_FILES["envelope"], m)
    ]
    signed += [
        ("receipt" if n.site is None else f"receipt of {site}", n.vlz, n.openssl, p)
        for site, (p, _, n) in sorted(s.receipts.items())
    ]
    for kind, source, names, parsed in signed:
        if not any(s.has(n) for n in names):
            continue
        key, _ = _key_at(
            s,
            parsed.head.routing.origin,
            parsed.head.signature_key_id,
            parsed.head.routing.created,
            f"{kind} signer",
        )
        for name, data in openssl_files(names, parsed, key).items():
            if s.read(name) != data:
                raise Failed(f"{name} is not taken from {source}")
        done.append(kind)
    if not done:
        raise Skipped("no openssl/ files in the bundle")
    return "openssl/ files are the signed bytes, signatures and keys of the " + " and ".join(done)
