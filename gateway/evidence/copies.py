"""Earlier copies of an envelope in an evidence bundle (``valise-evidence/3``, review 11b).

A message re-sealed or re-signed at its origin after one of its copies reached a
destination has a receipt naming that earlier copy's digest (envelopes.superseded,
store schema v10): the origin accepted it, since the copy was the same message. For
the bundle to show it, it holds the copy's framing prefix and head (kept from store
schema v12, ``superseded_heads``) as copies/HEX.head, and its digested range as
copies/HEX.digested; the segments are envelope.vlz's, which a re-seal keeps byte for
byte.

Rules:
- The exporter adds the copy every disclosed receipt names, when this store kept its
  head and the head is a re-seal of the envelope (envelope/replacement.py
  check_replacement: the same routing header and manifest). Without it, that
  receipt's document and content key are left out, with a note: its signature still
  verifies, but nothing in the bundle would show the digest it names is this message.
- The verifier's ``copies`` check (before the receipts' content checks) accepts a copy
  only if its file is a framed head and nothing more, its digested range is the one
  given and hashes to the digest in its name, it is not the envelope itself, it is a
  re-seal of envelope.vlz (check_replacement) and its origin signature verifies under
  a key of the origin in the directory in force at its ``created``. Any copy that fails
  fails the check (and so the bundle); a receipt naming no verified copy fails as before.
- A copy's signature is also checked against trusted time (``signing-time``): a key a
  directory of the bundle revokes fails it, as for the envelope (tokens over an earlier
  copy are not exported).
"""

from __future__ import annotations

from collections.abc import Sequence

from envelope.digested import digested_bytes
from envelope.errors import EnvelopeError
from envelope.head import ParsedHead
from envelope.open import parse_framed_head, verify_origin
from envelope.receipt import Receipt
from envelope.replacement import check_replacement
from envelope.values import format_time
from gateway.evidence.layout import COPIES, FORMAT_V1, FORMAT_V2, ReceiptFiles, copy_files
from gateway.evidence.state import BundleState, Failed, Skipped, key_at
from gateway.site.context import SiteContext

DIGEST_HEX = 64


def _short(digest: bytes) -> str:
    return f"{digest.hex()[:16]}…"


def _earlier_copy(head: bytes, digest: bytes, message: ParsedHead) -> ParsedHead:
    """The parsed head ``head`` of the copy of ``digest``, if it is one of ``message``.
    Raises EnvelopeError."""
    parsed, end = parse_framed_head(head)
    if end != len(head):
        raise EnvelopeError("it holds more than a framed head")
    if parsed.digest != digest:
        raise EnvelopeError(f"its digest is {_short(parsed.digest)}, not {_short(digest)}")
    check_replacement(parsed.head, message.head)
    return parsed


async def add_copies(
    ctx: SiteContext,
    message: ParsedHead,
    receipts: Sequence[tuple[ReceiptFiles, Receipt]],
    files: dict[str, bytes],
    notes: list[str],
) -> list[ParsedHead]:
    """Add to ``files`` the earlier copy each opened receipt names (``receipts``: its
    file names and its document), or withhold that receipt's document and key with a
    note (module rules); the copies added."""
    named = {doc.envelope_digest for _, doc in receipts} - {message.digest}
    if not named:
        return []
    heads = await ctx.store.superseded_heads(message.head.routing.message_id)
    added: dict[bytes, ParsedHead] = {}
    for names, doc in receipts:
        digest = doc.envelope_digest
        if digest == message.digest or digest in added:
            continue
        head = heads.get(digest, b"")
        try:
            if not head:
                raise EnvelopeError(
                    "this site kept no head of that copy (replaced before store schema 12)"
                )
            added[digest] = _earlier_copy(head, digest, message)
        except EnvelopeError as exc:
            files.pop(names.xml, None)
            files.pop(names.key, None)
            notes.append(
                f"{names.label}'s receipt names envelope digest {_short(digest)}, an earlier "
                f"copy of this message, but {exc}: {names.xml} and {names.key} are left out,"
                " since nothing here would show that digest is this message"
            )
            continue
        head_name, digested_name = copy_files(digest)
        files[head_name] = head
        files[digested_name] = digested_bytes(added[digest])
    return list(added.values())


def check_copies(s: BundleState) -> str:
    folder = s.path(COPIES)
    names = sorted(p.name for p in folder.glob("*.head")) if folder.is_dir() else []
    if s.format in (FORMAT_V1, FORMAT_V2):
        raise Skipped(f"a {s.format} bundle holds no earlier copies")
    if not names:
        raise Skipped("no earlier copy of the envelope in the bundle")
    m = s.need_message()
    problems, seen = [], []
    for name in names:
        stem = name.removesuffix(".head")
        if len(stem) != DIGEST_HEX or stem != stem.lower() or not _is_hex(stem):
            problems.append(f"{COPIES}/{name} is not named after a digest (HEX.head)")
            continue
        digest = bytes.fromhex(stem)
        head_name, digested_name = copy_files(digest)
        try:
            if digest == m.digest:
                raise Failed("it is the envelope itself")
            parsed = _earlier_copy(s.read(head_name), digest, m)
            if s.read(digested_name) != digested_bytes(parsed):
                raise Failed(f"{digested_name} is not the digested range of its head")
            r = parsed.head.routing
            key, d = key_at(s, r.origin, parsed.head.signature_key_id, r.created, "signature")
            verify_origin(parsed, key)
        except (Failed, EnvelopeError) as exc:
            problems.append(f"{head_name}: {exc}")
            continue
        s.copies[digest] = head_name
        s.copy_heads.append(parsed)
        seen.append(f"{head_name} signed with key {key.key_id} (directory serial {d.serial})")
    if problems:
        raise Failed("; ".join(problems))
    return (
        f"{len(seen)} earlier cop{'y' if len(seen) == 1 else 'ies'} of the envelope, each "
        f"with its routing header and manifest, re-sealed by {m.head.routing.origin} "
        f"(created {format_time(m.head.routing.created)}): " + "; ".join(seen)
    )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
