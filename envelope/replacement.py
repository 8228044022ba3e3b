"""May an arriving envelope take the place of a stored one with the same message id?

Re-sealing (envelope/reseal.py) is the one legitimate way two different envelopes
carry one message id: the origin wraps the same content key to new recipient keys and
signs the head again. Everything else a relay or a destination holds under that id
must stay what the origin first signed.

Rules:
- The routing header is compared whole (every field of :class:`RoutingHeader`:
  message id, origin, destinations, created, expires, priority, class, dossier,
  in-reply-to), so a field added to it later is covered without a change here.
- The manifest is compared whole too: a re-seal keeps the sealed header and every
  part byte for byte, so a replacement can change who can open the message, never
  what it says.
- The replacement wraps the content key to every destination and to nothing else
  (what :func:`envelope.reseal.reseal` writes).
- What a re-seal legitimately changes, and is therefore not compared: the recipient
  stanzas' keys and wrapped keys, the origin's signature and its key id, the trace.
- This module does no I/O and checks no signature: the caller verifies the arriving
  envelope's origin signature under a key of the origin usable now (gateway/relay/hop.py)
  before it asks.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from envelope.errors import EnvelopeError
from envelope.model import Head
from envelope.values import format_time


class ReplacementRefused(EnvelopeError):
    """The arriving envelope reuses a stored message id but is not a re-seal of the
    stored one by its origin: most likely a forgery."""


def check_replacement(held: Head, arriving: Head) -> None:
    """Raise :class:`ReplacementRefused` unless ``arriving`` may replace ``held``:
    the same routing header and manifest, wrapped to exactly the destinations."""
    for field in fields(held.routing):
        old = getattr(held.routing, field.name)
        new = getattr(arriving.routing, field.name)
        if old != new:
            raise ReplacementRefused(
                f"message id {held.routing.message_id} is held with {field.name} {_show(old)},"
                f" the arriving copy says {_show(new)}: only its origin can re-seal it,"
                " with the same routing header"
            )
    if held.manifest != arriving.manifest:
        raise ReplacementRefused(
            f"message id {held.routing.message_id}: the arriving copy's manifest differs"
            " (a re-seal keeps the sealed header and every part)"
        )
    wrapped_to = sorted(s.site for s in arriving.recipients)
    if wrapped_to != sorted(arriving.routing.destinations):
        raise ReplacementRefused(
            f"message id {held.routing.message_id}: the arriving copy is wrapped to"
            f" {', '.join(wrapped_to)}, not to exactly its destinations"
        )


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, datetime):
        return format_time(value)
    return "none" if value is None else str(value)
