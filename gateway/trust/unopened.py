"""Envelopes received here and not opened yet that are wrapped to keys about to go.

An envelope accepted before our directory showed one of our encryption keys revoked or
retired opens only while that key's private file is here. Both the running gateway's
key watcher (relay/key_watch.py) and ``valise keys`` with no gateway running
(key_sync.py) ask this before they prune: the file goes only once nothing received
still needs it (the gateway opens it first; a stopped one at its next start).
"""

from __future__ import annotations

from collections.abc import Collection

from envelope.errors import EnvelopeError
from envelope.open import parse_framed_head
from gateway.store.base import Store, StoreError

PAGE = 1000


async def sealed_to(store: Store, here: str, key_ids: Collection[str]) -> bool:
    """Whether an envelope received here and not opened yet has a stanza for ``here``
    under one of ``key_ids``; True also when the store cannot say (keep the file)."""
    if not key_ids:
        return False
    after = ""
    while True:
        try:
            page = await store.received_heads(after=after, limit=PAGE)
        except StoreError:
            return True
        for _, head in page:
            try:
                parsed = parse_framed_head(head)[0]
            except EnvelopeError:
                continue  # refused when it is opened, with its reason
            if any(s.site == here and s.key_id in key_ids for s in parsed.head.recipients):
                return True
        if len(page) < PAGE:
            return False
        after = page[-1][0]
