"""``valise doctor``: can this site still re-seal the mail it holds?

A message sealed here and held (waiting for a destination's encryption key, or held
for a destination key revoked since) goes on only once re-sealed, which opens its
escrow (the content key wrapped to this site's own encryption key, envelope/reseal.py)
with a private key of this site's ring. An escrow no key here opens can never be
re-sealed: the message is lost, though ``queue list`` still says it waits (review 10,
F1). Escrows are looked after before an own key's private file is pruned
(docs/KEYS.md); this check says so if that ever failed.

Reads the ring's encryption keys whose private files exist, and the escrows of the
messages with a held delivery; decrypts nothing but the content keys, in memory.
"""

from __future__ import annotations

from config.site import SiteConfig
from crypto.errors import DecryptionError
from crypto.keys import DecryptionKey
from crypto.recipes import unwrap
from envelope.seal import escrow_info
from gateway.service.doctor_checks import Check, Status
from gateway.site.keyring import decryption_key, load_ring
from gateway.site.keystore import KeyStoreError
from gateway.store.base import Store

NAME = "queue escrows"


def _own_decryption_keys(config: SiteConfig) -> list[DecryptionKey]:
    ring = load_ring(config.keys_dir, config.key_passphrase)
    return [
        decryption_key(ring, k)
        for k in ring.keys
        if k.kind == "encryption" and ring.path(k).exists()
    ]


def opens(escrow: bytes, message_id: str, keys: list[DecryptionKey]) -> bool:
    """Whether one of ``keys`` opens ``message_id``'s escrow."""
    for key in keys:
        try:
            unwrap(escrow, key, escrow_info(message_id, key.key_id))
        except DecryptionError:
            continue
        return True
    return False


async def escrow_check(store: Store, config: SiteConfig, held: list[str]) -> Check:
    """FAIL naming the messages ``held`` (ids with a held delivery) sealed here whose
    escrow no key of this site opens; OK with how many were looked at."""
    escrows = []
    for message_id in sorted(set(held)):
        escrow = await store.escrow(message_id)
        if escrow is not None:  # else not sealed here: its origin re-seals it
            escrows.append((message_id, escrow))
    if not escrows:
        return Check(NAME, Status.OK, "no held message sealed here")
    try:
        keys = _own_decryption_keys(config)
    except (KeyStoreError, OSError, ValueError) as exc:
        return Check(NAME, Status.WARN, f"cannot read this site's keys to look: {exc}")
    looked = len(escrows)
    lost = [message_id for message_id, escrow in escrows if not opens(escrow, message_id, keys)]
    if lost:
        return Check(
            NAME,
            Status.FAIL,
            f"{len(lost)} held message(s) sealed here can never be re-sealed: no key of this"
            f" site opens their escrow (its private key was deleted): {', '.join(lost[:5])}"
            + (" …" if len(lost) > 5 else "")
            + "; send them again (valise queue delete, then valise send)",
        )
    return Check(NAME, Status.OK, f"{looked} held message(s) sealed here, each escrow opens")
