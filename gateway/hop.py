"""The hop protocol, receiver side: validate a batch of envelopes from a TLS peer.

Rules (PRODUCT.md, Network; issue "The relay"):
- The TLS peer must be the hop's sender: the last hop record's site, or the
  origin when there is none.
- The origin's signature verifies under a usable key of the origin in the
  directory; every hop record verifies under its site's keys; the envelope has
  not expired; every destination is a known, active site.
- Only then does the receiver append its own signed hop record, and commit; its
  hop record is the acknowledgement. A repeated message id gets the first
  acknowledgement back and stores nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from crypto.keys import SigningKey, VerifyKey
from envelope.errors import EnvelopeError, FramingError
from envelope.framing import PREFIX_BYTES, frame_prefix, read_prefix
from envelope.head import ParsedHead, parse_head
from envelope.model import HopRecord
from envelope.open import verify_origin
from envelope.trace import append_hop, hop_message, verify_trace
from envelope.values import format_time, parse_time
from gateway.store.base import EnvelopeRecord
from routing.decision import Action, route
from routing.directory import Directory, DirectoryError

MEDIA_TYPE = "application/vnd.valise.envelopes"


class HopRefused(Exception):
    """This envelope is refused; the reason goes back to the sender."""


@dataclass(frozen=True)
class Checked:
    """An envelope that passed every check, ready to commit."""

    record: EnvelopeRecord
    next_hops: tuple[str, ...]
    deliver_here: bool
    hop_ack: bytes


def split_batch(body: bytes) -> Iterator[bytes]:
    """The framed envelopes of a request body, each whole. Raises FramingError."""
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
        yield body[pos:end]
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
) -> Checked:
    """Validate one envelope received from ``peer``. Raises HopRefused or EnvelopeError."""
    length = read_prefix(data[:PREFIX_BYTES])
    offset = PREFIX_BYTES + length
    parsed = parse_head(data[PREFIX_BYTES:offset])
    r = parsed.head.routing
    sender = parsed.head.trace[-1].site if parsed.head.trace else r.origin
    if sender != peer:
        raise HopRefused(f"TLS peer {peer} is not the hop's sender {sender}")
    try:
        origin_keys = keys_of(directory, r.origin)
        hop_keys = {hop.site: keys_of(directory, hop.site) for hop in parsed.head.trace}
    except DirectoryError as exc:
        raise HopRefused(str(exc)) from None
    signer = origin_keys.get(parsed.head.signature_key_id)
    if signer is None:
        raise HopRefused(f"signed by key {parsed.head.signature_key_id}, not a key of {r.origin}")
    verify_origin(parsed, signer)
    verify_trace(parsed, hop_keys)
    if r.expires <= now:
        raise HopRefused(f"expired at {format_time(r.expires)}")
    unknown = [d for d in r.destinations if not directory.knows(d)]
    if unknown:
        raise HopRefused(f"unknown destination {unknown[0]}")
    decisions = route(r, here=here, hub=directory.hub)
    next_hops = tuple(sorted({d.next_hop for d in decisions if d.next_hop and d.next_hop != peer}))
    deliver_here = any(d.action is Action.DELIVER for d in decisions)
    head, head_xml = append_hop(parsed, site=here, key=key, received_from=peer, at=now)
    relayed = frame_prefix(head_xml) + head_xml + data[offset:]
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
    )
    return Checked(record, next_hops, deliver_here, encode_ack(r.message_id, head.trace[-1]))


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
    """The sender's check of a hop acknowledgement. Raises HopRefused."""
    try:
        hop = HopRecord(
            site=str(ack["site"]),
            key_id=str(ack["key"]),
            at=parse_time(str(ack["at"]), "ack time"),
            received_from=str(ack["from"]),
            signature=base64.b64decode(str(ack["signature"]), validate=True),
        )
        key = peer_keys[hop.key_id]
    except (KeyError, ValueError, EnvelopeError) as exc:
        raise HopRefused(f"malformed hop acknowledgement: {exc}") from None
    previous = parsed.head.trace[-1].signature if parsed.head.trace else parsed.head.signature
    from crypto.errors import SignatureError
    from crypto.recipes import verify

    try:
        verify(key, hop.signature, hop_message(parsed, hop, previous))
    except SignatureError:
        raise HopRefused("hop acknowledgement signature does not verify") from None
