"""Escrows follow this site's encryption key, before the old key's private file goes.

An origin keeps each envelope's content key wrapped to its own encryption key (the
escrow, envelope/reseal.py), to re-seal the envelope if a destination's key is revoked
(gateway/relay/reseal.py). When this site's own encryption key is retired or revoked, its
private file is deleted once the directory shows it so (gateway/site/keyring.py prune):
every escrow still wrapped to it would then open with no key, and mail caught by a
later revocation of its destination's key could not be re-sealed.

Rules:
- Just before that deletion, the escrow of every envelope not yet delivered (no
  receipt yet), and of every receipt of ours as recent as gateway/relay/receipt_reseal.py
  may seal again, wrapped to a key about to go is wrapped again to the active
  encryption key (same content key, same message id); an escrow wrapped to another
  key is left as it is.
- Each is replaced only if it is still the one read (``replace_escrow``).
- Nothing is decrypted but the content keys, and they stay in memory only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crypto.keys import DecryptionKey, EncryptionKey
from envelope.errors import DecryptionFailed
from envelope.reseal import rewrap_escrow
from gateway.store.base import Store

# How far back a receipt of ours is sealed again to an origin whose key was revoked
# (gateway/relay/receipt_reseal.py reads it from here: the escrow must outlive it).
WINDOW = timedelta(days=1)
# Receipts sealed again after a revocation are at most WINDOW older than its first
# sight, which may come up to the replacement's publication later: a margin on top.
RECEIPTS_FOR = WINDOW + timedelta(days=1)


async def rewrap_escrows(
    store: Store, old: list[DecryptionKey], new: EncryptionKey, *, now: datetime
) -> int:
    """Wrap again to ``new`` every open escrow wrapped to a key of ``old``; return how
    many were."""
    if not old:
        return 0
    done = 0
    for message_id, escrow in await store.open_escrows(receipts_since=now - RECEIPTS_FOR):
        for key in old:
            try:
                fresh = rewrap_escrow(escrow, message_id, key, new)
            except DecryptionFailed:
                continue
            done += await store.replace_escrow(message_id, old=escrow, new=fresh)
            break
    return done
