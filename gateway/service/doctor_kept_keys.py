"""``valise doctor``: private files of this site's revoked or retired encryption keys
still on disk, and why.

Such a file is kept on purpose while an envelope received here sealed to that key is
not opened yet (docs/KEYS.md, gateway/trust/unopened.py): the gateway deletes it once
they are. A revoked key may be a stolen one, so the operator is told it is still there
and what holds it (review 10c F5); a file kept with nothing waiting for it means the
gateway has not pruned it yet (it is not running, or cannot).
"""

from __future__ import annotations

from config.site import SiteConfig
from gateway.service.doctor_checks import Check, Status
from gateway.site.keyring import load_ring
from gateway.site.keystore import KeyStoreError
from gateway.store.base import Store
from gateway.trust.unopened import needed
from routing.directory import USABLE

NAME = "keys kept"


async def kept_keys_check(store: Store, config: SiteConfig) -> Check:
    """WARN naming each own encryption key no longer usable whose private file is still
    here, with whether received envelopes still need it; OK when there is none."""
    try:
        ring = load_ring(config.keys_dir, config.key_passphrase)
    except (KeyStoreError, OSError, ValueError) as exc:
        return Check(NAME, Status.WARN, f"cannot read this site's key ring: {exc}")
    kept = [
        k
        for k in ring.keys
        if k.kind == "encryption" and k.key_state not in USABLE and ring.path(k).exists()
    ]
    if not kept:
        return Check(NAME, Status.OK, "no private file of a revoked or retired key")
    waiting = await needed(store, config.site.id, {k.id for k in kept})  # one scan
    said = []
    for k in kept:
        why = (
            "received envelopes sealed to it are not opened yet; the gateway deletes it"
            " once they are"
            if k.id in waiting
            else "nothing received needs it; the running gateway deletes it"
        )
        said.append(f"{k.state} encryption key {k.id}: {why}")
    return Check(NAME, Status.WARN, "private file kept of " + "; ".join(said))
