"""The batch framing of HQ's ``POST /v1/timestamp``: many RFC 3161 messages in one body.

    body := item*        item := LENGTH (4 bytes, big-endian uint32) || DER (LENGTH bytes)

A request body (``application/vnd.valise.tsq-batch``) carries TimeStampReq DER, the
answer (``application/vnd.valise.tsr-batch``) one TimeStampResp DER per request, in
the same order. The items themselves are read by :mod:`crypto.tsa`.

Rules:
- Bounded: at most ``max_items`` items (``MAX_BATCH_REQUESTS`` by default), each of 1 to
  ``max_item_bytes`` bytes, the body at most ``max_items * (4 + max_item_bytes)``
  bytes. Going over a bound is :class:`BatchTooLarge` (HTTP 413), checked before
  anything is allocated by it.
- Exact: an empty body, a truncated length or item, or a zero length is
  :class:`BatchMalformed` (HTTP 400). Both are :class:`BatchError`, and nothing else is
  raised on any input bytes.
- Pure: bytes in, bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.tsa_errors import MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES

__all__ = [
    "MAX_BATCH_REQUESTS",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "BatchError",
    "BatchMalformed",
    "BatchTooLarge",
    "frame",
    "max_body_bytes",
    "unframe",
    "unframe_responses",
]

REQUEST_MEDIA_TYPE = "application/vnd.valise.tsq-batch"
RESPONSE_MEDIA_TYPE = "application/vnd.valise.tsr-batch"
# The most requests one batch may carry (config/site.py MAX_TSA_BATCH bounds [tsa]
# batch_max by the same number).
MAX_BATCH_REQUESTS = 256
LENGTH_BYTES = 4


class BatchError(Exception):
    """A batch body is not acceptable (one line says why)."""


class BatchMalformed(BatchError):
    """The body is not a sequence of length-prefixed items (HTTP 400)."""


class BatchTooLarge(BatchError):
    """The body has too many items, or an item or the body is too large (HTTP 413)."""


def max_body_bytes(
    max_items: int = MAX_BATCH_REQUESTS, max_item_bytes: int = MAX_REQUEST_BYTES
) -> int:
    """The largest body a batch of these bounds can have."""
    return max_items * (LENGTH_BYTES + max_item_bytes)


def frame(items: Sequence[bytes]) -> bytes:
    """The body carrying ``items`` in order. Raises :class:`BatchMalformed` for an empty
    item (the format has none) or one over 2**32 - 1 bytes."""
    out = []
    for item in items:
        if not 0 < len(item) < 1 << 32:
            raise BatchMalformed("a batch item is 1 to 2**32 - 1 bytes")
        out.append(len(item).to_bytes(LENGTH_BYTES, "big"))
        out.append(bytes(item))
    return b"".join(out)


def unframe(
    body: bytes,
    *,
    max_items: int = MAX_BATCH_REQUESTS,
    max_item_bytes: int = MAX_REQUEST_BYTES,
) -> list[bytes]:
    """The items of ``body``, in order. Raises :class:`BatchTooLarge` or
    :class:`BatchMalformed` (see the module rules)."""
    if len(body) > max_body_bytes(max_items, max_item_bytes):
        raise BatchTooLarge(f"the batch is over {max_body_bytes(max_items, max_item_bytes)} bytes")
    if not body:
        raise BatchMalformed("the batch is empty")
    view = memoryview(body)
    items: list[bytes] = []
    pos = 0
    while pos < len(view):
        if len(items) == max_items:
            raise BatchTooLarge(f"the batch has more than {max_items} items")
        if len(view) - pos < LENGTH_BYTES:
            raise BatchMalformed(f"truncated: an item length at byte {pos}")
        length = int.from_bytes(view[pos : pos + LENGTH_BYTES], "big")
        pos += LENGTH_BYTES
        if length == 0:
            raise BatchMalformed(f"an empty item at byte {pos - LENGTH_BYTES}")
        if length > max_item_bytes:
            raise BatchTooLarge(f"an item of {length} bytes, over {max_item_bytes}")
        if len(view) - pos < length:
            raise BatchMalformed(f"truncated: an item of {length} bytes at byte {pos}")
        items.append(bytes(view[pos : pos + length]))
        pos += length
    return items


def unframe_responses(body: bytes, *, expected: int) -> list[bytes]:
    """The TimeStampResp items of an answer to a batch of ``expected`` requests.
    Raises :class:`BatchError` (also when the count is not ``expected``)."""
    items = unframe(body, max_items=MAX_BATCH_REQUESTS, max_item_bytes=MAX_RESPONSE_BYTES)
    if len(items) != expected:
        raise BatchMalformed(f"{len(items)} answers to {expected} requests")
    return items
