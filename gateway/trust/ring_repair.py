"""One next key per kind in a site's ring, whatever two commands did at once.

The directory takes one ``next`` key per kind and site (routing/directory.py
MAX_NEXT_KEYS). Two ``keys rotate`` at once (or the running site's TLS renewal meeting
an operator's rotation) each generated one before ``KeyOps._next_key`` looked again
under the ring lock; a ring left so by an older version made every later publish of the
site fail ("has a next signing key already"). Rules:

- For each kind with several next keys, the one the directory shows (published) is
  kept; if none is published yet, the oldest (first in the ring). The others are
  dropped: their entries and their private files (and certificates).
- A dropped key was never published, so nothing was signed, sealed or presented with
  it that any site could have accepted (a next key is used by nothing): nothing is lost.
- The caller holds the ring lock and saves the ring.
"""

from __future__ import annotations

from gateway.site.keyring import KeyRing, RingKey
from routing.directory import Directory, KeyState


def drop_extra_next(ring: KeyRing, directory: Directory) -> list[RingKey]:
    """Drop every next key of a kind but one (see the rules); return the keys dropped."""
    published = directory.site(ring.site).states()
    dropped: list[RingKey] = []
    for kind in sorted({k.kind for k in ring.keys}):
        pending = ring.of(kind, KeyState.NEXT)
        if len(pending) < 2:
            continue
        shown = [k for k in pending if k.id in published]
        keep = shown[0] if shown else pending[0]
        for k in pending:
            if k is not keep:
                ring.keys.remove(k)
                for suffix in (".key", ".crt"):
                    ring.path(k, suffix).unlink(missing_ok=True)
                dropped.append(k)
    return dropped
