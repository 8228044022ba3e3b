"""When a site seals again the receipts it relayed to a destination whose encryption key
was revoked (gateway/relay/receipt_reseal.py): once per revoked key, once the destination has
an active key, at most once per EVERY for one destination, none dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.relay.receipt_reseal import EVERY, WINDOW, ReceiptSweep
from routing.directory import DirectoryError, KeyState

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Key:
    key_id: str


@dataclass
class Entry:
    site: str
    encryption: list[tuple[Key, KeyState]] = field(default_factory=list)

    def active_encryption_key(self) -> Key:
        for k, s in self.encryption:
            if s is KeyState.ACTIVE:
                return k
        raise DirectoryError(f"{self.site} has no active encryption key")


@dataclass
class FakeDirectory:
    sites: list[Entry]

    def site(self, name: str) -> Entry:
        return next(e for e in self.sites if e.site == name)


def directory(**keys: dict[str, KeyState]) -> FakeDirectory:
    return FakeDirectory(
        [
            Entry(s.replace("_", "-"), [(Key(k), st) for k, st in ks.items()])
            for s, ks in keys.items()
        ]
    )


def test_a_revoked_key_is_swept_once_its_site_has_a_replacement() -> None:
    sweep = ReceiptSweep()
    revoked = directory(M_PARIS={"k1": KeyState.REVOKED})
    assert sweep.due(revoked, T0) == {}  # no replacement yet: waits
    later = T0 + timedelta(minutes=5)
    replaced = directory(M_PARIS={"k1": KeyState.REVOKED, "k2": KeyState.ACTIVE})
    due = sweep.due(replaced, later)
    # Receipts created since a day before the revocation was first seen.
    assert due == {("M-PARIS", "k1"): T0 - WINDOW}
    sweep.swept |= set(due)
    sweep.last["M-PARIS"] = later
    assert sweep.due(replaced, later + 10 * EVERY) == {}  # once per revoked key


def test_a_second_revocation_of_one_site_waits_its_turn_and_is_not_dropped() -> None:
    sweep = ReceiptSweep()
    first = directory(M_EVIL={"k1": KeyState.REVOKED, "k2": KeyState.ACTIVE})
    sweep.swept |= set(sweep.due(first, T0))
    sweep.last["M-EVIL"] = T0
    again = directory(
        M_EVIL={"k1": KeyState.REVOKED, "k2": KeyState.REVOKED, "k3": KeyState.ACTIVE},
        M_PARIS={"p1": KeyState.REVOKED, "p2": KeyState.ACTIVE},
    )
    soon = T0 + EVERY / 2
    # M-EVIL's second revocation waits; another site's does not.
    assert sweep.due(again, soon) == {("M-PARIS", "p1"): soon - WINDOW}
    assert sweep.due(again, T0 + EVERY) == {
        ("M-EVIL", "k2"): soon - WINDOW,
        ("M-PARIS", "p1"): soon - WINDOW,
    }
