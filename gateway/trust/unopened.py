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


async def needed(store: Store, here: str, key_ids: Collection[str]) -> set[str]:
    """Those of ``key_ids`` that an envelope received here and not opened yet has a
    stanza for ``here`` under (one scan for them all); every one of them when the store
    cannot say (keep the files)."""
    wanted, found = set(key_ids), set[str]()
    after = ""
    while wanted - found:
        try:
            page = await store.received_heads(after=after, limit=PAGE)
        except StoreError:
            return wanted
        for _, head in page:
            try:
                parsed = parse_framed_head(head)[0]
            except EnvelopeError:
                continue  # refused when it is opened, with its reason
            found |= {s.key_id for s in parsed.head.recipients if s.site == here} & wanted
        if len(page) < PAGE:
            break
        after = page[-1][0]
    return found


async def sealed_to(store: Store, here: str, key_ids: Collection[str]) -> bool:
    """Whether an envelope received here and not opened yet has a stanza for ``here``
    under one of ``key_ids``; True also when the store cannot say (keep the file)."""
    return bool(await needed(store, here, key_ids))
