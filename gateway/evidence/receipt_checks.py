"""The receipt checks of an evidence bundle and the delivery verdict they lead to.

``receipt-signature[SITE]`` and ``receipt-content[SITE]`` per receipt the bundle holds
(:func:`receipt_checks`), then ``delivery`` (:func:`check_delivery`): which destinations
a receipt whose signature and content both verified proves delivered
(:func:`destination_verdicts`). Run by gateway/evidence/verify.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from crypto.errors import CryptoError
from crypto.recipes import open_segment, part_key
from envelope.digested import digested_bytes
from envelope.open import parse_framed_head, verify_origin
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, parse_receipt
from envelope.sealed import parse_sealed
from envelope.values import format_time
from gateway.evidence.layout import (
    COPIES,
    ENVELOPE_DIGESTED,
    FORMAT_V1,
    RECEIPT,
    RECEIPTS,
    SITE_RE,
    ReceiptFiles,
    receipt_files,
)
from gateway.evidence.state import BundleState, Failed, Skipped, key_at, segments_match


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
        segments_match(data, parsed, offset, vlz)
        if s.read(names.digested) != digested_bytes(parsed):
            raise Failed(f"{names.digested} is not the digested range of {vlz}'s head")
        key, d = key_at(s, r.origin, parsed.head.signature_key_id, r.created, "receipt signature")
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
