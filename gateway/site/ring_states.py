"""A key's state moves in a site's key ring (gateway/site/keyring.py), in memory:
:func:`activate`, :func:`announce`, :func:`retire`, :func:`revoke`, and the keys
waiting on one (:func:`announced`, :func:`due_for_retirement`). Each move returns the
entries it changed, [] when the key is in that state already;
:func:`~gateway.site.keyring.save_ring` commits them. States go next -> active ->
retiring -> retired, and any -> revoked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.site.keyring import KINDS, MAX_OVERLAP_SECONDS, KeyRing, RingKey, now_text
from gateway.site.keystore import KeyStoreError
from routing.directory import KeyState


def activate(ring: KeyRing, key_id: str, *, now: datetime, overlap: timedelta) -> list[RingKey]:
    """Make ``key_id`` (next) active; the key it replaces becomes retiring until
    ``now + overlap``. Returns the entries changed; [] if it is active already."""
    k = ring.get(key_id)
    if k.key_state is KeyState.ACTIVE:
        return []
    if k.key_state is not KeyState.NEXT:
        raise KeyStoreError(f"{k.kind} key {key_id} is {k.state}; only a next key can be activated")
    when = now_text(now)
    changed = [
        ring.replace(old, state=KeyState.RETIRING.value, retire_after=now_text(now + overlap))
        for old in ring.of(k.kind, KeyState.ACTIVE)  # none when the active one was revoked
    ]
    changed.append(ring.replace(k, state=KeyState.ACTIVE.value, activated=when))
    return changed


def announce(
    ring: KeyRing, key_id: str, *, serial: int, deadline: datetime, overlap: timedelta
) -> list[RingKey]:
    """Record that next key ``key_id`` was announced in directory ``serial``, becomes
    active at ``deadline`` at the latest, and that the key it replaces then stays
    retiring for ``overlap``. Returns the entries changed: [] if it was announced
    already (the first announcement stands)."""
    k = ring.get(key_id)
    if k.key_state is not KeyState.NEXT:
        raise KeyStoreError(f"{k.kind} key {key_id} is {k.state}; only a next key is announced")
    if k.announced_in:
        return []
    if serial < 1:
        raise KeyStoreError(f"directory serial {serial} cannot announce a key")
    seconds = overlap.total_seconds()
    if not 0 <= seconds <= MAX_OVERLAP_SECONDS:
        raise KeyStoreError(f"an overlap must be 0 to {MAX_OVERLAP_SECONDS:.0f} seconds")
    return [
        ring.replace(
            k, announced_in=serial, activate_by=now_text(deadline), overlap_seconds=seconds
        )
    ]


def announced(ring: KeyRing) -> list[RingKey]:
    """The next keys waiting to become active (announced by ``keys rotate``)."""
    return [k for k in ring.keys if k.key_state is KeyState.NEXT and k.announced_in]


def retire(ring: KeyRing, key_id: str, *, now: datetime) -> list[RingKey]:
    """Retire a retiring key (its overlap may be cut short); [] if retired already."""
    k = ring.get(key_id)
    if k.key_state is KeyState.RETIRED:
        return []
    if k.key_state is not KeyState.RETIRING:
        raise KeyStoreError(f"{k.kind} key {key_id} is {k.state}; only a retiring key is retired")
    return [ring.replace(k, state=KeyState.RETIRED.value, retired=now_text(now))]


def revoke(ring: KeyRing, key_id: str, *, now: datetime, reason: str) -> list[RingKey]:
    """Revoke a key of any state; [] if revoked already."""
    k = ring.get(key_id)
    if k.key_state is KeyState.REVOKED:
        return []
    if k.key_state is KeyState.ACTIVE:
        raise KeyStoreError(f"activate a replacement before revoking active key {key_id}")
    return [ring.replace(k, state=KeyState.REVOKED.value, revoked=now_text(now), reason=reason)]


def due_for_retirement(ring: KeyRing, now: datetime) -> list[RingKey]:
    return [
        k
        for kind in KINDS
        for k in ring.of(kind, KeyState.RETIRING)
        if k.retire_after and datetime.fromisoformat(k.retire_after) <= now
    ]
