"""Re-sealing an envelope to new recipient keys, at its origin, without its plaintext.

When a destination's encryption key is revoked, envelopes still waiting to be
delivered were sealed to it. The origin keeps, beside each envelope it sealed, the
content key wrapped to its own encryption key (the *escrow*: :meth:`Sealing.escrow`,
HPKE with its own ``info`` label). With it the origin rebuilds the head:

- the same routing header (message id, times, destinations) and the same manifest:
  the sealed header and every part stay byte for byte what they were;
- new recipient stanzas, the content key wrapped to each destination's key now;
- a new origin signature with the origin's signing key now, and an empty trace.

So the result is an ordinary v1 envelope (SPEC §4–§5) with a new digest; a receiver
cannot tell it from one sealed today. Nothing here touches a disk or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.errors import DecryptionError
from crypto.keys import DecryptionKey, EncryptionKey, SigningKey
from crypto.recipes import sign, unwrap, wrap
from envelope.errors import DecryptionFailed, UsageError
from envelope.framing import frame_prefix
from envelope.head import (
    SIGNATURE_LABEL,
    ParsedHead,
    assemble_head,
    envelope_digest,
    serialize_signature,
    serialize_signed,
    serialize_trace,
)
from envelope.model import RecipientStanza
from envelope.seal import Recipient, escrow_info, wrap_info


@dataclass(frozen=True)
class Resealed:
    data: bytes  # the whole framed envelope
    digest: bytes  # its envelope digest (SPEC 4.3)
    signature: bytes  # its origin signature (the chain a first hop signs over)


def reseal(
    data: bytes,
    parsed: ParsedHead,
    offset: int,
    *,
    escrow: bytes,
    own_key: DecryptionKey,
    sender: SigningKey,
    recipients: Sequence[Recipient],
) -> Resealed:
    """``data`` (head ``parsed``, payload from ``offset``) sealed again to ``recipients``
    and signed by ``sender``. Raises DecryptionFailed (an escrow not for ``own_key``)
    or UsageError (recipients that are not exactly the destinations)."""
    routing = parsed.head.routing
    if {r.site for r in recipients} != set(routing.destinations):
        raise UsageError("every destination needs a recipient key, and only destinations")
    try:
        content_key = unwrap(escrow, own_key, escrow_info(routing.message_id, own_key.key_id))
    except DecryptionError:
        raise DecryptionFailed() from None
    stanzas = tuple(
        RecipientStanza(
            site=r.site,
            key_id=r.key.key_id,
            wrapped=wrap(content_key, r.key, wrap_info(routing.message_id, r.site, r.key.key_id)),
        )
        for r in recipients
    )
    return _signed_anew(data, offset, parsed, stanzas, sender)


def resign(data: bytes, parsed: ParsedHead, offset: int, *, sender: SigningKey) -> Resealed:
    """``data`` (head ``parsed``, payload from ``offset``) signed again by ``sender``:
    the same routing header, recipient stanzas and manifest, a new origin signature
    and an empty trace. For an envelope whose origin signing key was revoked before it
    was delivered; its stanzas still open for their keys, so no escrow is needed."""
    return _signed_anew(data, offset, parsed, parsed.head.recipients, sender)


def _signed_anew(
    data: bytes,
    offset: int,
    parsed: ParsedHead,
    stanzas: tuple[RecipientStanza, ...],
    sender: SigningKey,
) -> Resealed:
    """``data``'s payload (from ``offset``) under a new head: ``parsed``'s routing header
    and manifest with ``stanzas``, signed by ``sender``, with an empty trace."""
    signed_xml = serialize_signed(parsed.head.routing, stanzas, parsed.head.manifest)
    signature = sign(sender, SIGNATURE_LABEL + signed_xml)
    signature_xml = serialize_signature(sender.key_id, signature)
    head_xml = assemble_head(signed_xml, signature_xml, serialize_trace(()))
    return Resealed(
        frame_prefix(head_xml) + head_xml + data[offset:],
        envelope_digest(signed_xml, signature_xml),
        signature,
    )


def rewrap_escrow(escrow: bytes, message_id: str, old: DecryptionKey, new: EncryptionKey) -> bytes:
    """The origin's escrow of ``message_id``'s content key, wrapped to ``old`` (this
    site's encryption key, about to be deleted), wrapped again to ``new`` (its key now).
    Raises :class:`DecryptionFailed` if the escrow is not wrapped to ``old``."""
    try:
        content_key = unwrap(escrow, old, escrow_info(message_id, old.key_id))
    except DecryptionError:
        raise DecryptionFailed() from None
    return wrap(content_key, new, escrow_info(message_id, new.key_id))
