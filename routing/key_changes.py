"""Key state changes applied to a directory: what HQ publishes when a key rotates.

Rules:
- A key enters the directory as ``next``; then next -> active -> retiring -> retired,
  and any state -> revoked. Nothing goes back, and an id once retired or revoked
  never returns.
- Making a key active demotes the active key of the same kind and site to retiring
  in the same version: one key per kind is active.
- Setting a key to the state it has is a no-op, so a change can be sent again.
- A change that alters nothing leaves the directory as it is (same serial); any
  other gives a new version, serial + 1.
- A new key's id (a TLS key's pin) is in no site's entry, listed or retired: a key
  belongs to one site, for good (routing/directory.py).
- Bounded, so no site can grow the directory past ``MAX_DIRECTORY_BYTES``: at most
  ``MAX_NEXT_KEYS`` next key per kind and site, ``MAX_USABLE_KEYS`` usable ones
  (next, active, retiring), and ``MAX_KEYS_PER_SITE`` keys a site ever had (listed
  and retired ids). Beyond ``MAX_LISTED_RETIRED`` retired or revoked keys of a kind,
  the oldest is no longer listed with its key, only by its id among the site's
  ``retired-ids`` (still refused everywhere, never reused). The directory holds no
  dates, so the pruning is by count, not age; evidence checks read the archived
  versions in force at the time, which still list the key and its state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from crypto.errors import KeyFormatError
from crypto.keys import EncryptionKey, VerifyKey
from routing.directory import (
    USABLE,
    Directory,
    DirectoryError,
    KeyReuseError,
    KeyState,
    SiteEntry,
    check_unique_keys,
)

KINDS = ("signing", "encryption", "tls")
MAX_NEXT_KEYS = 1  # per site and kind: one key announced ahead of its use
MAX_USABLE_KEYS = 4  # per site and kind: next, active and retiring ones
# Per site and kind: retired or revoked keys listed with their key (an encryption key
# is about 1.6 kB); older ones are kept by their id only.
MAX_LISTED_RETIRED = 2
MAX_KEYS_PER_SITE = 128  # every key a site ever had, listed or retired (ids)


class KeyLimitError(DirectoryError):
    """A change would take a site past one of the key limits above."""


ALLOWED: dict[KeyState, tuple[KeyState, ...]] = {
    KeyState.NEXT: (KeyState.ACTIVE, KeyState.REVOKED),
    KeyState.ACTIVE: (KeyState.RETIRING, KeyState.REVOKED),
    KeyState.RETIRING: (KeyState.RETIRED, KeyState.REVOKED),
    KeyState.RETIRED: (KeyState.REVOKED,),
    KeyState.REVOKED: (),
}


@dataclass(frozen=True)
class KeyChange:
    site: str
    kind: str  # signing | encryption | tls
    key_id: str  # key id, or the SPKI pin of a TLS key
    state: KeyState
    public: bytes = b""  # a new signing or encryption key's raw public key


def _keys(entry: SiteEntry, kind: str) -> list[tuple[object, KeyState]]:
    if kind == "signing":
        return list(entry.signing)
    if kind == "encryption":
        return list(entry.encryption)
    return list(entry.tls)


def _id(kind: str, key: object) -> str:
    return key if kind == "tls" else key.key_id  # type: ignore[return-value,attr-defined]


def _new_key(change: KeyChange) -> object:
    try:
        if change.kind == "signing":
            key: object = VerifyKey.from_bytes(change.public)
        elif change.kind == "encryption":
            key = EncryptionKey.from_bytes(change.public)
        else:
            return change.key_id
    except KeyFormatError as exc:
        raise DirectoryError(f"new {change.kind} key: {exc}") from None
    if _id(change.kind, key) != change.key_id:
        raise DirectoryError(f"new {change.kind} key: id {change.key_id} is not its digest")
    return key


def _apply(entry: SiteEntry, change: KeyChange) -> SiteEntry:
    if change.kind not in KINDS:
        raise DirectoryError(f"unknown key kind {change.kind!r}")
    keys = _keys(entry, change.kind)
    index = next((i for i, (k, _) in enumerate(keys) if _id(change.kind, k) == change.key_id), None)
    if index is None:
        if change.state is not KeyState.NEXT:
            raise DirectoryError(
                f"{change.kind} key {change.key_id} of {entry.site} is not in the directory;"
                " a new key is published as next first"
            )
        keys.append((_new_key(change), KeyState.NEXT))
        if len(entry.key_ids()) + 1 > MAX_KEYS_PER_SITE:
            raise KeyLimitError(
                f"{entry.site} has had {MAX_KEYS_PER_SITE} keys, the most a site may have;"
                " HQ's operator must enrol it again"
            )
    else:
        key, state = keys[index]
        if state is change.state:
            return entry
        if change.state not in ALLOWED[state]:
            raise DirectoryError(
                f"{change.kind} key {change.key_id} of {entry.site} is {state.value};"
                f" it cannot become {change.state.value}"
            )
        if change.state is KeyState.ACTIVE:
            keys = [(k, KeyState.RETIRING if s is KeyState.ACTIVE else s) for k, s in keys]
        keys[index] = (key, change.state)
    _check_limits(entry.site, change.kind, keys)
    keys, dropped = _prune(change.kind, keys)
    entry = replace(entry, retired_ids=(*entry.retired_ids, *dropped))
    if change.kind == "signing":
        return replace(entry, signing=tuple(keys))  # type: ignore[arg-type]
    if change.kind == "encryption":
        return replace(entry, encryption=tuple(keys))  # type: ignore[arg-type]
    return replace(entry, tls=tuple(keys))  # type: ignore[arg-type]


def _check_limits(site: str, kind: str, keys: list[tuple[object, KeyState]]) -> None:
    pending = sum(1 for _, s in keys if s is KeyState.NEXT)
    if pending > MAX_NEXT_KEYS:
        raise KeyLimitError(
            f"{site} has a next {kind} key already: activate or revoke it before another"
        )
    usable = sum(1 for _, s in keys if s in USABLE)
    if usable > MAX_USABLE_KEYS:
        raise KeyLimitError(
            f"{site} would have {usable} usable {kind} keys; at most {MAX_USABLE_KEYS}"
        )


def _prune(
    kind: str, keys: list[tuple[object, KeyState]]
) -> tuple[list[tuple[object, KeyState]], list[str]]:
    """Keep the newest ``MAX_LISTED_RETIRED`` retired or revoked keys listed; the ids of
    older ones go to the site's retired ids."""
    done = [i for i, (_, s) in enumerate(keys) if s not in USABLE]
    drop = set(done[: max(0, len(done) - MAX_LISTED_RETIRED)])
    kept = [k for i, k in enumerate(keys) if i not in drop]
    return kept, [_id(kind, keys[i][0]) for i in sorted(drop)]


def apply_changes(d: Directory, changes: Sequence[KeyChange], *, now: datetime) -> Directory:
    """``d`` with ``changes`` applied in order (a new version), or ``d`` itself when
    they change nothing. Raises DirectoryError (KeyReuseError: a key id another site
    has, or one retired; KeyLimitError); then nothing is applied."""
    sites = {e.site: e for e in d.sites}
    for change in changes:
        if change.site not in sites:
            raise DirectoryError(f"site {change.site} is not in directory serial {d.serial}")
        entry = sites[change.site]
        if change.key_id not in entry.states():
            _check_new_id(sites.values(), change)
        sites[change.site] = _apply(entry, change)
    new_sites = tuple(sites[e.site] for e in d.sites)
    if new_sites == d.sites:
        return d
    for entry in new_sites:
        for kind in KINDS:
            active = [s for _, s in _keys(entry, kind) if s is KeyState.ACTIVE]
            if len(active) > 1:  # pragma: no cover - _apply demotes the old one
                raise DirectoryError(f"{entry.site} would have {len(active)} active {kind} keys")
    check_unique_keys(new_sites)
    return Directory(serial=d.serial + 1, issued=now, hub=d.hub, sites=new_sites)


def apply_site_update(d: Directory, changes: Sequence[KeyChange], *, now: datetime) -> Directory:
    """:func:`apply_changes` for a site's own key update (``/v1/keys``, review 10 F2):
    also refused if it leaves a site that had an active encryption key with none. Mail
    to a site with no active encryption key waits (gateway/relay/key_wait.py), so a mission
    revoking its own key without a replacement would hold what is sent to it; ``valise
    keys revoke`` always activates the replacement in the same update. HQ's own
    revocation of a site's key (a compromise) is not a site update and still may."""
    new = apply_changes(d, changes, now=now)
    for site in sorted({c.site for c in changes}):
        if _has_active(d.site(site), "encryption") and not _has_active(
            new.site(site), "encryption"
        ):
            raise DirectoryError(
                f"{site} would have no active encryption key: an update that revokes or"
                " retires it must activate its replacement too"
            )
    return new


def _has_active(entry: SiteEntry, kind: str) -> bool:
    return any(s is KeyState.ACTIVE for _, s in _keys(entry, kind))


def enrol_site(d: Directory, entry: SiteEntry, *, now: datetime) -> Directory:
    """``d`` with ``entry`` added, or in place of the site's entry (enrolled again): the
    old entry's keys go to the new one's retired ids, never to be used again. Raises
    KeyReuseError if a new key is any site's, now or before."""
    old = next((e for e in d.sites if e.site == entry.site), None)
    if old is not None:
        gone = [key_id for key_id in old.key_ids() if key_id not in entry.retired_ids]
        # A site enrolled again keeps the organs HQ listed for it (issue 12).
        entry = replace(
            entry, retired_ids=(*entry.retired_ids, *gone), organs=entry.organs or old.organs
        )
    others = tuple(e for e in d.sites if e.site != entry.site)
    sites = (*others, entry)
    check_unique_keys(sites)
    return Directory(serial=d.serial + 1, issued=now, hub=d.hub, sites=sites)


def _check_new_id(entries: Iterable[SiteEntry], change: KeyChange) -> None:
    for e in entries:
        if change.key_id in e.key_ids():
            whose = "was a key" if change.key_id in e.retired_ids else "is a key"
            raise KeyReuseError(
                f"{change.kind} key {change.key_id} {whose} of {e.site}: a key id or TLS pin"
                f" belongs to one site, for good; {change.site} cannot publish it"
            )


def key_site(d: Directory, key_id: str) -> tuple[str, str, KeyState] | None:
    """(site, kind, state) of a key id or TLS pin anywhere in the directory, or None.
    Raises KeyReuseError if more than one site lists it (a directory that breaks the
    uniqueness rule: never act on such an id)."""
    found: list[tuple[str, str, KeyState]] = []
    for e in d.sites:
        kind, state = e.states().get(key_id, ("", None))
        if state is not None:
            found.append((e.site, kind, state))
    if len(found) > 1:
        sites = ", ".join(site for site, _, _ in found)
        raise KeyReuseError(f"key {key_id} is listed for {sites}: refusing to pick one")
    return found[0] if found else None
