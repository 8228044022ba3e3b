"""The bytes an envelope digest covers: what a time-stamp or a receipt is over.

Rules:
- The envelope digest (SPEC 4.3) is SHA-256 over one contiguous byte range of the
  head: ``<signed>…</signed>`` followed by ``<signature …>…</signature>``. The hop
  records after it (the trace) are outside it, so every hop's copy of an envelope has
  the same digested bytes.
- These bytes are what ``openssl ts -verify -data FILE`` hashes: a time-stamp token over
  the envelope digest verifies against exactly them.
- The head is parsed with the one hardened parser (:func:`envelope.head.parse_head`), so
  the range is only ever read from a canonical, well-formed head; the origin's
  signature is not checked here (the caller stored the envelope after checking it).
- :func:`digested_slice` finds the range without parsing, for an envelope already
  checked and stored with its digest: a canonical head has ``<signed>`` right after
  the fixed root start tag and no ``</`` inside any text, so the range ends at the
  first ``</signature>``; its SHA-256 must then be the digest, or nothing is returned.
- Pure: bytes in, bytes out. Failures are :class:`~envelope.errors.EnvelopeError`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from envelope.errors import FramingError
from envelope.framing import PREFIX_BYTES, read_prefix
from envelope.head import ParsedHead
from envelope.model import RoutingHeader
from envelope.open import parse_framed_head

__all__ = ["Digested", "digested", "digested_bytes", "digested_slice"]


@dataclass(frozen=True)
class Digested:
    """An envelope's digested byte range, its SHA-256 and its (signed) routing header."""

    data: bytes  # <signed>…</signed><signature …>…</signature>, as in the head
    digest: bytes  # SHA-256 of ``data``: the envelope digest
    routing: RoutingHeader


def digested_bytes(parsed: ParsedHead) -> bytes:
    """The digested byte range of a parsed head: SHA-256 of it is ``parsed.digest``."""
    return parsed.signed_xml + parsed.signature_xml


def digested(envelope: bytes) -> Digested:
    """The digested byte range of a framed envelope (``MAGIC ‖ L ‖ head ‖ segments``).

    Only the prefix and the head are read; the segments may be absent. Raises
    :class:`~envelope.errors.FramingError` (not an envelope, a truncated head) or
    another :class:`~envelope.errors.EnvelopeError` (the head is not a valid head).
    """
    parsed, _ = parse_framed_head(envelope)
    return Digested(digested_bytes(parsed), parsed.digest, parsed.head.routing)


_SIGNED_OPEN = b"<signed>"
_SIGNATURE_CLOSE = b"</signature>"


def digested_slice(envelope: bytes, digest: bytes) -> bytes:
    """The digested byte range of a framed envelope stored with ``digest``, unparsed.

    For envelopes this site has already checked (the stamper reads many): the range is
    found by its delimiters and returned only if its SHA-256 is ``digest``. Raises
    :class:`~envelope.errors.FramingError` otherwise.
    """
    length = read_prefix(envelope[:PREFIX_BYTES])
    head = envelope[PREFIX_BYTES : PREFIX_BYTES + length]
    start = head.find(_SIGNED_OPEN)
    end = head.find(_SIGNATURE_CLOSE, max(start, 0))
    if start < 0 or end < 0:
        raise FramingError("the head holds no signed element and signature")
    data = head[start : end + len(_SIGNATURE_CLOSE)]
    if not hmac.compare_digest(hashlib.sha256(data).digest(), digest):
        raise FramingError("the head's signed bytes do not have the envelope digest")
    return data
