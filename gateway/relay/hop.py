"""The hop protocol, receiver side: validate a batch of envelopes from a TLS peer.

Rules (PRODUCT.md, Network; issue "The relay"):
- Hub and spoke, enforced: a mission accepts hops from the hub only (checked first,
  before any signature), and the hub accepts an envelope only from its origin (a
  mission never relays). So mission-to-mission traffic cannot bypass the hub's
  relay, time-stamps and audit log. (No directory policy relaxes this yet.)
- The TLS peer must be the hop's sender: the last hop record's site, or the
  origin when there is none; and each hop record's ``from`` is the site before it
  (envelope/trace.py check_path), so a trace cannot claim a path not taken.
- The origin's signature verifies under a usable key of the origin in the
  directory; every hop record verifies under its site's keys; the envelope has
  not expired; every destination is a known, active site.
- A receipt (class ``receipt``) at the hub must fit the message it answers, as the
  hub holds it (:func:`check_receipt`; the handler looks the message up): it names
  that message (``in-reply-to``), comes from one of its destinations and goes to its
  origin alone, and is the first receipt from that destination (the same receipt
  envelope again passes, to be answered as a duplicate; a different one is refused:
  gateway/relay/circular.py hub_second_receipt). That check reads the store before the
  accepting transaction, so the store enforces the rule again inside it: of two
  different receipts from one destination racing, the second is neither stored nor
  queued, and is answered refused (Acceptance.refused; review 11b, F3). The hub
  stamps each receipt it relays as ``delivered`` for that message, and marks that
  destination delivered, so a receipt it cannot match is refused, not relayed
  unstamped: every message passes the hub and stays in its store until its operator
  deletes it.
- Only then does the receiver append its own signed hop record, and commit; its
  hop record is the acknowledgement. A repeated message id gets the first
  acknowledgement back and stores nothing, unless that one was signed with a key of
  ours no longer accepted: then a fresh one, kept in its place (gateway/relay/ack_renewal.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from crypto.errors import SignatureError
from crypto.keys import SigningKey, VerifyKey
from crypto.recipes import verify
from envelope.errors import EnvelopeError, FramingError
from envelope.framing import PREFIX_BYTES, frame_prefix, read_prefix
from envelope.head import ParsedHead, parse_head
from envelope.model import HopRecord, RoutingHeader
from envelope.open import verify_origin
from envelope.receipt import RECEIPT_CLASS
from envelope.trace import append_hop, hop_message_of, verify_trace
from envelope.values import format_time, parse_time
from gateway.relay.circular import hub_second_receipt
from gateway.runtime.errors import Refused, Retry
from gateway.store.base import EnvelopeRecord, MessageRoute
from routing.decision import Action, route
from routing.directory import Directory, DirectoryError

MEDIA_TYPE = "application/vnd.valise.envelopes"
HEAD_CACHE_SIZE = 1024
# How far the origin's clock may run ahead of ours when it sets ``expires``.
CLOCK_SKEW = timedelta(hours=1)
# The farthest expiry a receiver takes when its caller names none: the largest
# [relay] max_expires_days allows (config/site.py).
LONGEST_EXPIRY = timedelta(days=3650)


class HopError(Exception):
    """An envelope (or a hop acknowledgement) that does not pass: HopRefused or
    HopUnknownKey (gateway/runtime/errors.py)."""


class HopRefused(HopError, Refused):
    """This envelope is refused for good; the reason goes back to the sender."""


class HopUnknownKey(HopError, Retry):
    """Signed with a key our directory does not list at all: most likely a key newer
    than our copy of the directory. Not a refusal for good: the sender tries again
    later (status ``retry``), by when we have fetched the directory announcing it."""


def check_known(directory: Directory, site: str, key_id: str, what: str) -> None:
    """Raise HopUnknownKey if ``key_id`` is not listed for ``site`` in any state."""
    # A key listed for any site is not "newer than our directory": a key of one site
    # claimed for another is a forgery, refused for good by the checks that follow.
    if key_id in directory.key_owners:
        return
    if directory.knows(site) and key_id in directory.site(site).retired_ids:
        # Retired or revoked long enough ago to be listed by id only: refused for good.
        raise HopRefused(f"{what} key refused: {directory.site(site).refusal(key_id)}")
    if directory.knows(site):
        raise HopUnknownKey(
            f"{what} key {key_id} of {site} is not in our directory (serial {directory.serial})"
        )


def check_stanzas(directory: Directory, parsed: ParsedHead) -> None:
    """Every recipient stanza wraps to an encryption key its site has in the directory
    (in any listed state: mail sealed to a key revoked since is held, not refused here).
    A key listed nowhere is most likely newer than our directory (HopUnknownKey); a key
    of another site, or not an encryption key, is refused: otherwise a site could make
    the destination search its keys for one it was never meant to hold."""
    for stanza in parsed.head.recipients:
        check_known(directory, stanza.site, stanza.key_id, "recipient encryption")
        owner = directory.key_owners.get(stanza.key_id)
        if owner is None or owner[:2] != (stanza.site, "encryption"):
            raise HopRefused(
                f"recipient stanza for {stanza.site} wraps to key {stanza.key_id},"
                f" which is not an encryption key of {stanza.site}"
            )


@dataclass(frozen=True)
class Checked:
    """An envelope that passed every check, ready to commit."""

    record: EnvelopeRecord
    next_hops: tuple[str, ...]
    deliver_here: bool
    hop_ack: bytes
    parsed: ParsedHead  # the head of record.data (with our hop record), as parse_head reads it
    offset: int  # where record.data's segments start


class HeadCache:
    """Heads the hop handler parsed (and checked) of envelopes to be delivered here,
    kept in memory for a while so that local delivery need not parse them again.
    An entry is used only if the stored envelope starts with exactly the head bytes it
    was made from; anything missing or evicted is simply parsed."""

    def __init__(self, size: int = HEAD_CACHE_SIZE) -> None:
        self.size = size
        self._heads: dict[str, tuple[ParsedHead, int, bytes]] = {}

    def put(self, message_id: str, parsed: ParsedHead, offset: int, data: bytes) -> None:
        self._heads[message_id] = (parsed, offset, data[:offset])
        while len(self._heads) > self.size:
            del self._heads[next(iter(self._heads))]

    def take(self, record: EnvelopeRecord) -> tuple[ParsedHead, int] | None:
        entry = self._heads.pop(record.message_id, None)
        if entry is None or record.data[: entry[1]] != entry[2]:
            return None
        return entry[0], entry[1]


def split_batch(body: bytes) -> Iterator[tuple[bytes, ParsedHead]]:
    """The framed envelopes of a request body, each whole, with its parsed head (for
    :func:`check_envelope`, which then need not parse it again). Raises EnvelopeError."""
    pos = 0
    while pos < len(body):
        length = read_prefix(body[pos : pos + PREFIX_BYTES])
        head_end = pos + PREFIX_BYTES + length
        if head_end > len(body):
            raise FramingError("truncated envelope in batch")
        parsed = parse_head(body[pos + PREFIX_BYTES : head_end])
        end = head_end + parsed.head.manifest.total_length
        if end > len(body):
            raise FramingError("truncated envelope in batch")
        yield body[pos:end], parsed
        pos = end


def keys_of(directory: Directory, site: str) -> dict[str, VerifyKey]:
    return directory.site(site).verify_keys()


def check_envelope(
    data: bytes,
    *,
    peer: str,
    here: str,
    key: SigningKey,
    directory: Directory,
    now: datetime,
    parsed: ParsedHead | None = None,
    longest: timedelta = LONGEST_EXPIRY,
) -> Checked:
    """Validate one envelope received from ``peer`` (``parsed``: its head, if the caller
    parsed it already, as split_batch does). ``longest``: how far ahead of ``now`` its
    ``expires`` may be (this site's [relay] max_expires_days; an envelope that would
    sit in our store for years is refused, whoever sealed it). Raises HopRefused,
    HopUnknownKey or EnvelopeError."""
    length = read_prefix(data[:PREFIX_BYTES])
    offset = PREFIX_BYTES + length
    if parsed is None:
        parsed = parse_head(data[PREFIX_BYTES:offset])
    r = parsed.head.routing
    if here != directory.hub and peer != directory.hub:
        raise HopRefused(f"{here} accepts hops from the hub {directory.hub} only, not from {peer}")
    sender = parsed.head.trace[-1].site if parsed.head.trace else r.origin
    if sender != peer:
        raise HopRefused(f"TLS peer {peer} is not the hop's sender {sender}")
    try:
        origin_keys = keys_of(directory, r.origin)
        hop_keys = {hop.site: keys_of(directory, hop.site) for hop in parsed.head.trace}
    except DirectoryError as exc:
        raise HopRefused(str(exc)) from None
    check_known(directory, r.origin, parsed.head.signature_key_id, "origin signing")
    for hop in parsed.head.trace:
        check_known(directory, hop.site, hop.key_id, "hop record")
    signer = origin_keys.get(parsed.head.signature_key_id)
    if signer is None:
        refusal = directory.site(r.origin).refusal(parsed.head.signature_key_id)
        raise HopRefused(f"origin signature refused: {refusal}")
    verify_origin(parsed, signer)
    verify_trace(parsed, hop_keys)
    if here == directory.hub and parsed.head.trace:
        raise HopRefused(
            f"the hub accepts an envelope from its origin {r.origin} only;"
            f" {peer} relayed it (missions do not relay)"
        )
    if r.expires <= now:
        raise HopRefused(f"expired at {format_time(r.expires)}")
    if r.expires - now > longest + CLOCK_SKEW:
        raise HopRefused(
            f"expires {format_time(r.expires)}: more than {longest.days} days ahead"
            " (this site's [relay] max_expires_days)"
        )
    unknown = [d for d in r.destinations if not directory.knows(d)]
    if unknown:
        raise HopRefused(f"unknown destination {unknown[0]}")
    check_stanzas(directory, parsed)
    decisions = route(r, here=here, hub=directory.hub)
    next_hops = tuple(sorted({d.next_hop for d in decisions if d.next_hop and d.next_hop != peer}))
    deliver_here = any(d.action is Action.DELIVER for d in decisions)
    # One destination row per final destination this site is responsible for: only
    # where it relays (a pure destination keeps none), never for a receipt.
    routes: tuple[tuple[str, str | None], ...] = ()
    if next_hops and r.doc_class != RECEIPT_CLASS:
        routes = tuple((d.destination, d.next_hop) for d in decisions if d.destination != peer)
    head, head_xml = append_hop(parsed, site=here, key=key, received_from=peer, at=now)
    prefix = frame_prefix(head_xml)
    relayed = prefix + head_xml + data[offset:]
    # The same bytes parse_head would find in the relayed head: ours, for local delivery.
    relayed_head = ParsedHead(head, parsed.signed_xml, parsed.signature_xml)
    record = EnvelopeRecord(
        message_id=r.message_id,
        origin=r.origin,
        destinations=r.destinations,
        digest=parsed.digest,
        created=r.created,
        expires=r.expires,
        priority=r.priority.value,
        received_from=peer,
        data=relayed,
        doc_class=r.doc_class,
        chain=head.trace[-1].signature,
        routes=routes,
        answers=r.in_reply_to if r.doc_class == RECEIPT_CLASS else None,
    )
    ack = encode_ack(r.message_id, head.trace[-1])
    return Checked(record, next_hops, deliver_here, ack, relayed_head, len(prefix) + len(head_xml))


def check_receipt(
    r: RoutingHeader,
    original: MessageRoute | None,
    *,
    here: str,
    receipt_digest: bytes | None = None,
) -> None:
    """Whether the receipt with routing header ``r`` (and envelope digest
    ``receipt_digest``) fits the message it answers, ``original`` as ``here`` holds it
    (None: not held here). See the module rules. Raises HopRefused."""
    m = r.in_reply_to
    if m is None:
        raise HopRefused("a receipt names the message it answers (in-reply-to); this one does not")
    if original is None:
        raise HopRefused(
            f"receipt for message {m}, which {here} does not hold"
            " (never relayed by it, or deleted by its operator)"
        )
    if original.doc_class == RECEIPT_CLASS:
        raise HopRefused(f"receipt for message {m}, itself a receipt: receipts are not receipted")
    if r.origin not in original.destinations:
        raise HopRefused(
            f"receipt for message {m} from {r.origin}, which is not a destination of it"
        )
    if r.destinations != (original.origin,):
        raise HopRefused(
            f"receipt for message {m} addressed to {', '.join(r.destinations)}: a receipt"
            f" has one destination, the message's origin {original.origin}"
        )
    if receipt_digest is not None:
        second = hub_second_receipt(r, original, receipt_digest)
        if second is not None:
            raise HopRefused(second)


def receipts_to_check(accepted: Iterable[Checked], *, here: str, hub: str) -> list[str | None]:
    """What the receipts among ``accepted`` answer (their ``in-reply-to``), for the
    handler to look up before :func:`check_receipt`; none but at the hub."""
    if here != hub:
        return []
    routings = (c.parsed.head.routing for c in accepted)
    return [r.in_reply_to for r in routings if r.doc_class == RECEIPT_CLASS]


def encode_ack(message_id: str, hop: HopRecord) -> bytes:
    return json.dumps(
        {
            "id": message_id,
            "site": hop.site,
            "key": hop.key_id,
            "at": format_time(hop.at),
            "from": hop.received_from,
            "signature": base64.b64encode(hop.signature).decode(),
        },
        sort_keys=True,
    ).encode()


def verify_ack(ack: dict[str, object], parsed: ParsedHead, peer_keys: dict[str, VerifyKey]) -> None:
    """The sender's check of a hop acknowledgement. Raises HopRefused, or HopUnknownKey
    when it is signed by a key of the peer that our directory does not list."""
    previous = parsed.head.trace[-1].signature if parsed.head.trace else parsed.head.signature
    verify_hop_ack(ack, parsed.digest, previous, peer_keys)


def verify_hop_ack(
    ack: object, digest: bytes, previous: bytes, peer_keys: dict[str, VerifyKey]
) -> None:
    """verify_ack of the envelope of this ``digest`` whose last signature (the last hop
    record's, else the origin's) is ``previous``: what the store keeps (Claimed), so the
    sender need not parse the head again. Raises HopRefused or HopUnknownKey."""
    if not isinstance(ack, dict):
        raise HopRefused("malformed hop acknowledgement: not an object")
    try:
        hop = HopRecord(
            site=str(ack["site"]),
            key_id=str(ack["key"]),
            at=parse_time(str(ack["at"]), "ack time"),
            received_from=str(ack["from"]),
            signature=base64.b64decode(str(ack["signature"]), validate=True),
        )
    except (KeyError, ValueError, EnvelopeError) as exc:
        raise HopRefused(f"malformed hop acknowledgement: {exc}") from None
    key = peer_keys.get(hop.key_id)
    if key is None:
        raise HopUnknownKey(
            f"hop acknowledgement signed by key {hop.key_id} of {hop.site},"
            " which our directory does not accept"
        )
    try:
        verify(key, hop.signature, hop_message_of(digest, hop, previous))
    except SignatureError:
        raise HopRefused("hop acknowledgement signature does not verify") from None
