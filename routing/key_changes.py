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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from crypto.errors import KeyFormatError
from crypto.keys import EncryptionKey, VerifyKey
from routing.directory import Directory, DirectoryError, KeyState, SiteEntry

KINDS = ("signing", "encryption", "tls")

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
    if change.kind == "signing":
        return replace(entry, signing=tuple(keys))  # type: ignore[arg-type]
    if change.kind == "encryption":
        return replace(entry, encryption=tuple(keys))  # type: ignore[arg-type]
    return replace(entry, tls=tuple(keys))  # type: ignore[arg-type]


def apply_changes(d: Directory, changes: Sequence[KeyChange], *, now: datetime) -> Directory:
    """``d`` with ``changes`` applied in order (a new version), or ``d`` itself when
    they change nothing. Raises DirectoryError; then nothing is applied."""
    sites = {e.site: e for e in d.sites}
    for change in changes:
        if change.site not in sites:
            raise DirectoryError(f"site {change.site} is not in directory serial {d.serial}")
        sites[change.site] = _apply(sites[change.site], change)
    new_sites = tuple(sites[e.site] for e in d.sites)
    if new_sites == d.sites:
        return d
    for entry in new_sites:
        for kind in KINDS:
            active = [s for _, s in _keys(entry, kind) if s is KeyState.ACTIVE]
            if len(active) > 1:  # pragma: no cover - _apply demotes the old one
                raise DirectoryError(f"{entry.site} would have {len(active)} active {kind} keys")
    return Directory(serial=d.serial + 1, issued=now, hub=d.hub, sites=new_sites)


def key_site(d: Directory, key_id: str) -> tuple[str, str, KeyState] | None:
    """(site, kind, state) of a key id or TLS pin anywhere in the directory."""
    return d.key_owners.get(key_id)
