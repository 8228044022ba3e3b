"""Small envelopes in memory: seal.4k, open.4k, their primitive limits, seal.4k.r97, and
seal.4k.escrow (seal.4k plus the origin's escrow wrap, what a gateway's origin does).

One envelope is a 4 KiB payload, one part, one recipient, the default (only) suite,
sealed with :func:`envelope.seal.seal_bytes` and opened with :func:`envelope.open.open_bytes`.
Every seal builds a fresh routing header and :class:`Sealing` (a new envelope each time).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from bench.common import Bench, Settings, ops_per_second
from crypto.keys import DecryptionKey, SigningKey
from crypto.recipes import (
    new_content_key,
    open_segment,
    part_key,
    seal_segment,
    sign,
    unwrap,
    verify,
    wrap,
)
from envelope.model import PartInfo, SealedHeader
from envelope.open import open_bytes
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes, wrap_info

PAYLOAD_BYTES = 4 * 1024
SIGNED_BYTES = 3000  # about the size of a one-recipient <signed> element
ORIGIN = "HQ-BENCH"
SITE = "M-001"
MANY = 97
POOL = 32  # distinct envelopes open.4k cycles through

_SEALED = SealedHeader(
    parts=(PartInfo("payload.bin", "application/octet-stream", PAYLOAD_BYTES),),
    subject="benchmark envelope",
)


def seal_one(
    payload: bytes,
    sender: SigningKey,
    sites: Sequence[str],
    keys: Sequence[DecryptionKey],
    escrow_to: DecryptionKey | None = None,
) -> bytes:
    """A whole new envelope: fresh routing header, content key, wraps and signature (and,
    with ``escrow_to``, the content key wrapped to the origin key: gateway/relay/submit.py)."""
    sealing = Sealing(
        routing=new_routing(origin=ORIGIN, destinations=sites, now=datetime.now(UTC)),
        sender=sender,
        recipients=[Recipient(s, k.public) for s, k in zip(sites, keys, strict=True)],
        sealed=_SEALED,
    )
    data = seal_bytes(sealing, [payload])
    if escrow_to is not None:
        sealing.escrow(escrow_to.public)
    return data


def benches(payload: bytes, settings: Settings) -> list[Bench]:
    sender = SigningKey.generate()
    key = DecryptionKey.generate()
    many_sites = [f"M-{i:03d}" for i in range(1, MANY + 1)]
    many_keys = [DecryptionKey.generate() for _ in many_sites]

    # Correctness once, outside the timings.
    pool = [seal_one(payload, sender, [SITE], [key]) for _ in range(POOL)]
    _, _, parts = open_bytes(pool[0], sender=sender.public, site=SITE, key=key)
    big = seal_one(payload, sender, many_sites, many_keys)
    _, _, parts97 = open_bytes(big, sender=sender.public, site=many_sites[-1], key=many_keys[-1])
    if parts != [payload] or parts97 != [payload]:
        raise SystemExit("bench: an envelope did not open to its payload")

    def seal_4k() -> None:
        seal_one(payload, sender, [SITE], [key])

    counter = iter(range(10**12))

    def open_4k() -> None:
        open_bytes(pool[next(counter) % POOL], sender=sender.public, site=SITE, key=key)

    own = DecryptionKey.generate()

    def seal_4k_escrow() -> None:
        seal_one(payload, sender, [SITE], [key], escrow_to=own)

    def seal_4k_r97() -> None:
        seal_one(payload, sender, many_sites, many_keys)

    # The bare primitives one envelope needs, nothing else.
    content_key = new_content_key()
    pkey = part_key(content_key, 1)
    info = wrap_info("0190b3a0-0000-7000-8000-000000000000", SITE, key.key_id)
    message = os.urandom(SIGNED_BYTES)
    wrapped = wrap(content_key, key.public, info)
    signature = sign(sender, message)
    ciphertext = seal_segment(pkey, payload)

    def limit_seal() -> None:
        wrap(content_key, key.public, info)
        sign(sender, message)
        hashlib.sha256(seal_segment(pkey, payload)).digest()

    def limit_open() -> None:
        unwrap(wrapped, key, info)
        verify(sender.public, signature, message)
        open_segment(pkey, ciphertext)
        hashlib.sha256(ciphertext).digest()

    b = settings.budget
    return [
        Bench("seal.4k", "env/s", lambda: ops_per_second(seal_4k, b)),
        Bench("limit.seal.4k", "env/s", lambda: ops_per_second(limit_seal, b)),
        Bench("open.4k", "env/s", lambda: ops_per_second(open_4k, b)),
        Bench("limit.open.4k", "env/s", lambda: ops_per_second(limit_open, b)),
        Bench("seal.4k.r97", "env/s", lambda: ops_per_second(seal_4k_r97, b)),
        Bench("seal.4k.escrow", "env/s", lambda: ops_per_second(seal_4k_escrow, b)),
    ]
