"""The key ids a ``valise keys`` command may be given, by prefix (routing/key_prefix.py).

- ``activate`` and ``retire`` act on this site's key ring: a prefix is resolved
  against the ring alone.
- ``revoke`` resolves against the ring and every site's keys in the directory in
  force (listed ones, as routing/key_changes.py key_site finds them): at HQ any of
  them may be revoked, and at a mission a prefix of another site's key must resolve
  to it so that the refusal names it, not pick one of the mission's own keys.
- ``keys list`` prints each id by its shortest unique prefix among all of those.
"""

from __future__ import annotations

from gateway.site.keyring import KeyRing
from routing.directory import Directory
from routing.key_prefix import KnownKey, shortest_unique_prefixes


def ring_keys(ring: KeyRing) -> list[KnownKey]:
    """This site's own keys, labelled ``SITE kind, state``."""
    return [KnownKey(k.id, f"{ring.site} {k.kind}, {k.state}") for k in ring.keys]


def directory_keys(directory: Directory) -> list[KnownKey]:
    """Every key listed in ``directory``, labelled ``SITE kind, state``."""
    return [
        KnownKey(key_id, f"{entry.site} {kind}, {state.value}")
        for entry in directory.sites
        for key_id, (kind, state) in entry.states().items()
    ]


def listed_prefixes(shown: list[str], known: list[KnownKey]) -> dict[str, str]:
    """Each id in ``shown`` -> the prefix ``keys list`` prints: unique among ``shown``
    and ``known`` (what revoke resolves against), so it resolves back to that id."""
    return shortest_unique_prefixes([*shown, *(k.key_id for k in known)])
