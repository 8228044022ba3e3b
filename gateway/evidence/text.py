"""EXPLANATION.txt of an evidence bundle: the plain-text account a person reads first.

It says what was sent, when, by whom and to whom, how it travelled, what the receipt
and the time-stamp tokens say, which directory and keys were in force, what each
piece proves (and what it does not), and the exact commands that check the pieces:
``valise evidence verify`` for all of them, openssl for what a standard tool can check.
Everything it states is read from the signed pieces, except the lines marked as this
site's own log.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from crypto.tsa_verify import TokenInfo
from envelope.head import ParsedHead
from envelope.receipt import Receipt
from envelope.values import format_time
from gateway.evidence.layout import (
    CA,
    ENVELOPE,
    ENVELOPE_DIGESTED,
    FORMAT,
    OPENSSL_FILES,
    TRUST,
    TSA_NAME_RE,
    ReceiptFiles,
    hop_files,
    in_force,
    token_data,
)
from gateway.store.base import Transition
from routing.directory import Directory, DirectoryError


def _key_line(directory: Directory, site: str) -> str:
    try:
        e = directory.site(site)
    except DirectoryError:
        return f"    {site}: not listed"
    signing = ", ".join(f"{k.key_id} ({s.value})" for k, s in e.signing) or "-"
    encryption = ", ".join(f"{k.key_id} ({s.value})" for k, s in e.encryption) or "-"
    return f"    {site}: signing {signing}; encryption {encryption}"


def _trace_lines(parsed: ParsedHead, prefix: str, sep: str = "-") -> list[str]:
    names = list(hop_files(prefix, parsed.head.trace, sep))
    out = []
    for i, (h, name) in enumerate(zip(parsed.head.trace, names, strict=True), start=1):
        out += [
            f"    {i}. {format_time(h.at)}  {h.site} accepted it from {h.received_from}",
            f"       signed with {h.site}'s key {h.key_id}: {name}",
        ]
    return out


def _origin_key_check(pem: str, directory: Directory | None, site: str, key_id: str) -> list[str]:
    serial = directory.serial if directory is not None else "?"
    return [
        f"  The key in {pem} is {site}'s signing key {key_id}:",
        f'  its raw 32 bytes in base64 are the text of <signing-key id="{key_id}">',
        f"  in directory/{serial}.xml:",
        f"    openssl pkey -pubin -in {pem} -outform DER | tail -c 32 | base64",
    ]


def explain(
    *,
    here: str,
    now: datetime,
    message: ParsedHead,
    receipts: Sequence[tuple[ReceiptFiles, ParsedHead, Receipt | None]],
    copies: Mapping[bytes, str],
    directories: Sequence[Directory],
    tokens: Sequence[tuple[str, str, TokenInfo]],
    history: Sequence[Transition],
    files: Mapping[str, bytes],
    notes: Sequence[str],
) -> str:
    """The text of EXPLANATION.txt for a bundle of these pieces (``files``: by name)."""
    r = message.head.routing
    m = message.head.manifest
    created_dir = in_force(directories, r.created)
    out = [
        f"Valise evidence bundle for message {r.message_id}",
        f"Exported by site {here} at {format_time(now)} ({FORMAT}).",
        "",
        "WHAT WAS SENT",
        f"  Message id     {r.message_id}",
        f"  From           {r.origin} (signed with its key {message.head.signature_key_id})",
        f"  To             {', '.join(r.destinations)}",
        f"  Created        {format_time(r.created)}   expires {format_time(r.expires)}",
        f"  Priority       {r.priority.value}   class {r.doc_class}"
        + (f"   dossier {r.dossier}" if r.dossier else "")
        + (f"   in reply to {r.in_reply_to}" if r.in_reply_to else ""),
        f"  Contents       {len(m.parts)} encrypted part(s), {m.total_length} bytes of ciphertext",
        "                 in envelope.vlz. Only the destinations can read them and the sealed",
        "                 header (subject, file names); this bundle does not disclose them.",
        f"  Envelope digest {message.digest.hex()}",
        f"                 = SHA-256 of {ENVELOPE_DIGESTED} (the signed routing header, wraps and",
        "                 manifest of every ciphertext digest, and the origin's signature).",
        "",
        "HOW IT TRAVELLED",
    ]
    if message.head.trace:
        out.append("  Hop records in the envelope's trace (each signed by the relay):")
        out += _trace_lines(message, "message")
    else:
        out += [
            "  No hop records: this is the copy the origin sent. The next hop's signed",
            "  acknowledgement is checked when the envelope is forwarded but is not kept",
            "  at the origin; the relay's and the destination's copies carry the records.",
        ]
    if history:
        out.append(f"  {here}'s own log (history.json; this site's record, not signed):")
        out += [
            f"    {format_time(t.at)}  {t.state:<10} {t.peer or '':<10} {t.reason}".rstrip()
            for t in history
        ]
    receipted = {n.site for n, _, _ in receipts}
    out += ["", f"DELIVERY RECEIPTS ({len(receipts)} of {len(r.destinations)} destinations)"]
    if not receipts:
        out.append("  None in this bundle (see the notes below).")
    for names, receipt, receipt_doc in receipts:
        rr = receipt.head.routing
        out += [
            f"  {names.vlz} is receipt envelope {rr.message_id}, class {rr.doc_class},",
            f"  in reply to {rr.in_reply_to}, created {format_time(rr.created)},",
            f"  signed by {rr.origin} with its key {receipt.head.signature_key_id},",
            f"  addressed to {', '.join(rr.destinations)}.",
        ]
        if receipt_doc is not None:
            copy = copies.get(receipt_doc.envelope_digest)
            match = (
                "matches the envelope digest above"
                if receipt_doc.envelope_digest == message.digest
                else f"is that of {copy}, an earlier copy of this envelope (see below)"
                if copy is not None
                else "DOES NOT match the envelope digest above"
            )
            out += [
                f"  {names.xml} (opened at {here}) says: message {receipt_doc.message_id},",
                f"  envelope-sha256 {receipt_doc.envelope_digest.hex()},",
                f"  site {receipt_doc.site}, at {format_time(receipt_doc.at)}.",
                f"  That digest {match}.",
                f"  {names.key} is the receipt envelope's content key: with it anyone can",
                "  decrypt the receipt's ciphertext, whose SHA-256 the destination signed, and",
                f"  see that it is {names.xml} (valise evidence verify does this).",
            ]
        if receipt.head.trace:
            out.append("  Hop records of the receipt on its way back:")
            out += _trace_lines(receipt, names.hop_prefix, names.hop_sep)
    missing = [d for d in r.destinations if d not in receipted]
    if receipts and missing:
        out.append(f"  No receipt in this bundle from: {', '.join(missing)}.")
    if copies:
        out += ["", "EARLIER COPIES OF THE ENVELOPE"]
        for digest, name in sorted(copies.items(), key=lambda c: c[1]):
            digested = name.removesuffix(".head") + ".digested"
            out += [
                f"  {name}: the framing prefix and head of a copy of this message that reached",
                f"  a destination before {r.origin} re-sealed (or re-signed) it; digest",
                f"  {digest.hex()} = SHA-256 of {digested}. Its routing header and",
                "  manifest (so every ciphertext segment of envelope.vlz) are the envelope's;",
                "  only the recipient stanzas, the signature and its key differ. It is signed by",
                f"  {r.origin} (valise evidence verify checks all of this).",
            ]
    out += ["", "TIME-STAMP TOKENS (RFC 3161, HQ's time-stamp authority)"]
    if tokens:
        for name, kind, info in tokens:
            out += [
                f"  {name} ({kind}): genTime {gen_time(info)}, serial {info.serial}",
                f"    over SHA-256 of {token_data(name.rpartition('/')[2])}, "
                f"by {info.tsa_name or 'the TSA'}",
            ]
    else:
        out.append("  None stored at this site for this message.")
    out += ["", "DIRECTORY AND KEYS"]
    for d in directories:
        why = []
        if d is created_dir:
            why.append("in force when the message was created")
        if d.serial == max(x.serial for x in directories):
            why.append("the latest this site holds")
        out.append(
            f"  directory/{d.serial}.xml  serial {d.serial}, issued {format_time(d.issued)}"
            + (f" ({'; '.join(why)})" if why else "")
        )
    trust = files.get(TRUST, b"")
    out += [
        f"  Trust anchor {TRUST}: HQ's directory key (base64, raw Ed25519)",
        f"    {trust.decode(errors='replace').strip()}",
        "  Compare it with the key HQ publishes: the bundle's own copy proves nothing alone.",
    ]
    if CA in files:
        fp = hashlib.sha256(_pem_der(files[CA])).hexdigest()
        out.append(f"  {CA}: the HQ site CA, SHA-256 fingerprint {fp}")
    for name in _tsa_files(files):
        out.append(f"  {name}: a certificate of HQ's time-stamp authority, issued by that CA")
    shown = created_dir or directories[-1]
    out.append(f"  Keys in directory serial {shown.serial} (all versions: keys.json):")
    sites = sorted({r.origin, *r.destinations, *(h.site for h in message.head.trace)})
    # (the receipts' hop sites are in keys.json)
    out += [_key_line(shown, s) for s in sites]
    out += [
        "",
        "WHAT EACH PIECE PROVES",
        f"  - {ENVELOPE}: the origin's Ed25519 signature covers the routing header above, the",
        "    wraps and the SHA-256 of every ciphertext segment: the origin sent exactly this.",
        "  - directory/*.xml, signed by HQ's directory key: which keys were each site's, and",
        "    in which state, when each signature was made.",
        "  - hops/: each relay's signed statement that it accepted the envelope, chained to",
        "    the origin's signature so that none can be dropped, reordered or moved.",
        "  - receipts/SITE.vlz: signed by destination SITE, it names the message",
        "    (in-reply-to), and through receipts/SITE.xml the envelope digest: SITE opened",
        "    exactly this envelope (non-repudiation of receipt), one per destination.",
        "    A destination with no receipt here is not proven delivered.",
        "  - copies/: an earlier copy a receipt names: the same message, signed by its origin",
        "    before it was re-sealed (only when a receipt names one).",
        "  - timestamps/: HQ's time-stamp authority attests that the digested bytes existed",
        "    at genTime.",
        "  - MANIFEST.json lists the SHA-256 of every file: it detects damage and missing",
        "    files, but it is not signed; the signatures above are the proof.",
        "  Not checked: revocation of certificates after the fact, and the clock of any site",
        "  beyond what the time-stamps say.",
        "",
        "HOW TO CHECK (in this folder)",
        "  All of it, offline:   valise evidence verify .",
        "  With standard tools:",
        f"    sha256sum {ENVELOPE_DIGESTED}     # = the envelope digest above"
        + (" and each receipt's envelope-sha256" if any(d for _, _, d in receipts) else ""),
    ]
    for name, _kind, _ in tokens:
        data = token_data(name.rpartition("/")[2])
        out.append(f"    openssl ts -verify -data {data} -in {name} -token_in -CAfile {CA}")
    if CA in files:
        out += [f"    openssl verify -CAfile {CA} {name}" for name in _tsa_files(files)]
    signed_by = [(OPENSSL_FILES["envelope"], message)]
    signed_by += [(n.openssl, p) for n, p, _ in receipts]
    for (signed, sig, pem), _parsed in signed_by:
        if pem not in files:
            continue
        out.append(
            f"    openssl pkeyutl -verify -pubin -inkey {pem} -rawin -in {signed} -sigfile {sig}"
        )
    for (_, _, pem), parsed in signed_by:
        if pem not in files:
            continue
        directory = in_force(directories, parsed.head.routing.created)
        out += _origin_key_check(
            pem, directory, parsed.head.routing.origin, parsed.head.signature_key_id
        )
    for names, _, _ in receipts:
        if names.digested in files:
            out.append(
                f"  ({names.digested} is {names.label}'s receipt's digested range: "
                f"its {names.token} token's.)"
            )
    if notes:
        out += ["", "NOTES"]
        out += [f"  - {n}" for n in notes]
    return "\n".join(out) + "\n"


def gen_time(info: TokenInfo) -> str:
    """A token's genTime in UTC with its fraction, ``Z``-suffixed."""
    return info.gen_time.isoformat().replace("+00:00", "Z")


def _tsa_files(files: Mapping[str, bytes]) -> list[str]:
    return sorted(n for n in files if n.startswith("certs/") and TSA_NAME_RE.fullmatch(n[6:]))


def _pem_der(pem: bytes) -> bytes:
    """The DER inside the first PEM block (for a fingerprint); the bytes if not PEM."""
    lines = pem.decode(errors="replace").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN"))
        end = next(i for i, line in enumerate(lines) if line.startswith("-----END") and i > start)
        return base64.b64decode("".join(lines[start + 1 : end]))
    except (StopIteration, ValueError):
        return pem
