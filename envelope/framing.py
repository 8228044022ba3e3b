"""Framing: how the XML head and the binary segments share one file or HTTP body.

    envelope := MAGIC (8 bytes) || L (4 bytes, big-endian) || head XML (L bytes)
                || segment 0 (the sealed header) || segment 1 .. n (the parts)

Every segment's exact length is in the signed manifest, so the total length is
known from the head: a reader rejects a shorter body (truncation) and a longer one
(trailing data) before it trusts anything past the head.
"""

from __future__ import annotations

from envelope import limits
from envelope.errors import FramingError, LimitExceeded

MAGIC = b"VALISE\x00\x01"
PREFIX_BYTES = len(MAGIC) + 4


def frame_prefix(head_xml: bytes) -> bytes:
    if len(head_xml) > limits.MAX_HEAD_XML_BYTES:
        raise LimitExceeded(f"the head exceeds {limits.MAX_HEAD_XML_BYTES} bytes")
    return MAGIC + len(head_xml).to_bytes(4, "big")


def read_prefix(prefix: bytes) -> int:
    """The head length announced by the first PREFIX_BYTES bytes. Raises :class:`FramingError`."""
    if len(prefix) < PREFIX_BYTES:
        raise FramingError("truncated: shorter than the envelope prefix")
    if prefix[: len(MAGIC)] != MAGIC:
        raise FramingError("not a Valise v1 envelope (bad magic)")
    length = int.from_bytes(prefix[len(MAGIC) : PREFIX_BYTES], "big")
    if length > limits.MAX_HEAD_XML_BYTES:
        raise LimitExceeded(f"the head announces {length} bytes, over {limits.MAX_HEAD_XML_BYTES}")
    return length
