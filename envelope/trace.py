"""Hop records: each relay's signed statement, appended without touching the origin's signature.

A hop signs ``HOP_LABEL || envelope digest || site NUL key NUL at NUL from NUL ||
previous signature``, where the previous signature is the last hop's (or, for the
first hop, the origin's), so the trace is a chain: a record cannot be removed,
reordered or moved to another envelope without breaking the ones after it.

The sites chain too: each record's ``from`` is the site of the record before it (the
origin for the first), so a trace cannot claim a path the envelope did not take
(:func:`check_path`, run by :func:`verify_trace`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from crypto.errors import SignatureError
from crypto.keys import SigningKey, VerifyKey
from crypto.recipes import sign, verify
from envelope import limits
from envelope.errors import EnvelopeError, LimitExceeded, SignatureInvalid
from envelope.head import ParsedHead, assemble_head, serialize_trace
from envelope.model import Head, HopRecord
from envelope.values import format_time, truncate_to_second

HOP_LABEL = b"valise/v1/hop\x00"


class TraceSpliced(EnvelopeError):
    """A hop record says it came from a site that is not the one before it."""


def check_path(origin: str, trace: tuple[HopRecord, ...]) -> None:
    """Raise :class:`TraceSpliced` unless every hop record's ``from`` is the site of the
    record before it (``origin`` for the first)."""
    previous = origin
    for index, hop in enumerate(trace):
        if hop.received_from != previous:
            raise TraceSpliced(
                f"hop {index + 1} ({hop.site}) says it received the envelope from"
                f" {hop.received_from}, but the hop before it is {previous}"
            )
        previous = hop.site


def hop_message(parsed: ParsedHead, hop: HopRecord, previous_signature: bytes) -> bytes:
    return hop_message_of(parsed.digest, hop, previous_signature)


def hop_message_of(digest: bytes, hop: HopRecord, previous_signature: bytes) -> bytes:
    """What ``hop`` signs, for the envelope of this digest whose last signature (the
    previous hop record's, else the origin's) is ``previous_signature``."""
    fields = f"{hop.site}\x00{hop.key_id}\x00{format_time(hop.at)}\x00{hop.received_from}\x00"
    return HOP_LABEL + digest + fields.encode() + previous_signature


def _previous(parsed: ParsedHead, index: int) -> bytes:
    return parsed.head.trace[index - 1].signature if index else parsed.head.signature


def append_hop(
    parsed: ParsedHead, *, site: str, key: SigningKey, received_from: str, at: datetime
) -> tuple[Head, bytes]:
    """The head with one more hop record, and its new XML. Raises :class:`LimitExceeded`."""
    if len(parsed.head.trace) >= limits.MAX_HOPS:
        raise LimitExceeded(f"more than {limits.MAX_HOPS} hop records")
    unsigned = HopRecord(site, key.key_id, truncate_to_second(at), received_from, b"")
    signature = sign(key, hop_message(parsed, unsigned, _previous(parsed, len(parsed.head.trace))))
    hop = HopRecord(unsigned.site, unsigned.key_id, unsigned.at, received_from, signature)
    trace = (*parsed.head.trace, hop)
    head = Head(
        routing=parsed.head.routing,
        recipients=parsed.head.recipients,
        manifest=parsed.head.manifest,
        signature_key_id=parsed.head.signature_key_id,
        signature=parsed.head.signature,
        trace=trace,
    )
    return head, assemble_head(parsed.signed_xml, parsed.signature_xml, serialize_trace(trace))


def verify_trace(parsed: ParsedHead, keys: Mapping[str, Mapping[str, VerifyKey]]) -> None:
    """Check every hop record against the keys of the site it names.

    ``keys`` maps a site id to that site's usable keys (key id -> key). A record
    signed by any other site's key is refused. Raises :class:`SignatureInvalid`, or
    :class:`TraceSpliced` for a record whose ``from`` breaks the chain of sites.
    """
    check_path(parsed.head.routing.origin, parsed.head.trace)
    for index, hop in enumerate(parsed.head.trace):
        key = keys.get(hop.site, {}).get(hop.key_id)
        if key is None:
            raise SignatureInvalid(
                f"hop {index + 1} ({hop.site}) is signed by unknown key {hop.key_id}, "
                f"not a key of {hop.site}"
            )
        try:
            verify(key, hop.signature, hop_message(parsed, hop, _previous(parsed, index)))
        except SignatureError:
            raise SignatureInvalid(
                f"hop {index + 1} ({hop.site}) signature does not verify"
            ) from None
