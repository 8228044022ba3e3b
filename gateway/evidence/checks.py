"""The checks of an evidence bundle, one function each (run by gateway/evidence/verify.py).

Each check reads only the bundle's files through
:class:`~gateway.evidence.state.BundleState`, records what it established there for the
checks after it, and returns one line saying what it proved; it raises
:class:`~gateway.evidence.state.Failed` (the reason) or
:class:`~gateway.evidence.state.Skipped` (the piece is not in the bundle). The receipt
checks are in gateway/evidence/receipt_checks.py. The rules they enforce are stated in
gateway/evidence/verify.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from crypto.recipes import verify
from crypto.tsa_verify import verify_token
from envelope.digested import digested_bytes
from envelope.head import ParsedHead
from envelope.open import parse_framed_head, verify_origin
from envelope.trace import TraceSpliced, check_path, hop_message
from envelope.values import format_time, parse_time
from gateway.evidence.layout import (
    CA,
    DIRECTORIES,
    ENVELOPE,
    ENVELOPE_DIGESTED,
    FORMATS,
    HOPS,
    KEYS,
    MANIFEST,
    OPENSSL_FILES,
    TIMESTAMPS,
    TRUST,
    TSA_NAME_RE,
    hop_files,
    involved_sites,
    openssl_files,
    pem_body,
    public_keys,
    token_data,
)
from gateway.evidence.state import BundleState, Failed, Skipped, key_at, segments_match
from gateway.evidence.text import gen_time
from gateway.relay.hop import verify_hop_ack
from routing.directory import DirectoryError, parse_directory


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


def check_envelope(s: BundleState) -> str:
    data = s.read(ENVELOPE)
    parsed, offset = parse_framed_head(data)
    r = parsed.head.routing
    if s.manifest_id is not None and r.message_id != s.manifest_id:
        raise Failed(f"{ENVELOPE} is message {r.message_id}, not {s.manifest_id}")
    segments_match(data, parsed, offset, ENVELOPE)
    if s.read(ENVELOPE_DIGESTED) != digested_bytes(parsed):
        raise Failed(f"{ENVELOPE_DIGESTED} is not the digested range of {ENVELOPE}'s head")
    s.message, s.message_data = parsed, data
    to = ", ".join(r.destinations)
    return f"message {r.message_id} from {r.origin} to {to}, digest {parsed.digest.hex()}"


def check_origin(s: BundleState) -> str:
    m = s.need_message()
    r = m.head.routing
    key, d = key_at(s, r.origin, m.head.signature_key_id, r.created, "origin signature")
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
        key, _ = key_at(s, hop.site, hop.key_id, hop.at, f"{prefix} hop {i + 1} ({hop.site})")
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
        key, _ = key_at(s, site, str(ack.get("key", "")), moment, f"acknowledgement by {site}")
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
        key, _ = key_at(
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
